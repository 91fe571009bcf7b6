"""A decoder-only transformer with causal masking: P(x_t | x_<t) over the vocabulary.

One module for the Llama family (RoPE, RMSNorm, SwiGLU, grouped-query attention,
tied embeddings) and the GPT-2 family (learned positions, LayerNorm, GELU, biases);
the `ModelConfig` picks the parts. Query, key and value share one fused projection,
and so do the SwiGLU gate and up projections: fewer, larger matrix products per step.

Teacher forcing lives in `forward(ids, targets=...)`, which also returns the loss
-(1/T) Σ_t log P(x_t | x_<t); generation calls `forward` with a view of a KV cache
that the runtime owns (model/kv_cache.py), once per prompt chunk (prefill) and then
once per new position. The modules themselves hold no per-request state, so any
number of callers can share one model.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from tokenloom.model import native
from tokenloom.model.config import ModelConfig
from tokenloom.model.kernels import Linear, Packed, packed_linear
from tokenloom.model.kv_cache import KVPool
from tokenloom.model.rope import Rope, rope_matrices, rope_tables, rotate_queries_keys


class _RMSNormFunction(torch.autograd.Function):
    """RMSNorm with its gradient written out: one autograd node instead of one per operation.

    With x̂ = x·r, r = 1/sqrt(mean(x²) + eps), y = x̂·w and g = ∂L/∂y · w:
        ∂L/∂w = Σ_rows ∂L/∂y · x̂        ∂L/∂x = r · (g − x̂ · mean(g · x̂))
    PyTorch's CPU `rms_norm` is a composite of small operations, and its backward is
    their chain, several times slower for a training step's shapes (docs/performance.md,
    "Training against nanoGPT").
    """

    @staticmethod
    def forward(ctx, x, weight, eps):
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # bfloat16 and float16 in float32
        rstd = torch.rsqrt(xf.square().mean(-1, keepdim=True).add_(eps))  # (..., 1)
        xhat = xf * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.x_dtype = x.dtype
        return (xhat * weight).to(torch.promote_types(x.dtype, weight.dtype))

    @staticmethod
    def backward(ctx, grad):
        xhat, rstd, weight = ctx.saved_tensors
        grad = grad.to(xhat.dtype)
        grad_weight = (grad * xhat).flatten(0, -2).sum(0).to(weight.dtype)
        g = grad * weight
        grad_x = (g - xhat * (g * xhat).mean(-1, keepdim=True)).mul_(rstd)
        return grad_x.to(ctx.x_dtype), grad_weight, None


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · w."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return _RMSNormFunction.apply(x, self.weight, self.eps)
        if native.norm_usable(x, self.weight):  # long float32 inputs without gradients: one pass
            return native.rms_norm(x, self.weight, self.eps)
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def add_norm(norm: nn.Module, x: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + h, norm(x + h)): a residual add and the norm after it, in one pass for RMSNorm on
    long float32 inputs without gradients (tokenloom's CPU kernel). h None: (x, norm(x))."""
    if h is None:
        return x, norm(x)
    if isinstance(norm, RMSNorm) and native.norm_usable(x, norm.weight, h):
        return native.add_rms_norm(x, h, norm.weight, norm.eps)
    x = x + h
    return x, norm(x)


def make_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.dim, config.norm_eps)
    return nn.LayerNorm(config.dim, eps=config.norm_eps)


MATH_ATTENTION_MAX_T = 128  # compiled windows up to this length use the plain products (see Attention.attend)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int = 0):
        super().__init__()
        self.layer = layer  # which of the cache's layers this one reads and writes
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        q_dim, kv_dim = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
        self.split = (q_dim, kv_dim, kv_dim)
        self.qkv = Linear(config.dim, q_dim + 2 * kv_dim, bias=config.bias)
        self.out = Linear(q_dim, config.dim, bias=config.bias)

    def forward(self, x, rope: Rope | None, cache, keep: int | None = None) -> torch.Tensor:
        """(B, T, C) → (B, T, C); with `keep`, the output for the last `keep` positions only,
        (B, keep, C): keys and values still come from (and go to the cache for) all T.
        rope: the pass's rotary inputs (model/rope.py), None for learned positions.
        cache: a view of the runtime's KV cache (model/kv_cache.py) or None (plain causal)."""
        B, T, _ = x.shape
        # Attention itself runs in float32 whatever the weights' precision: the CPU's
        # bfloat16 batched products are slower than float32 ones at these sizes.
        heads = self.qkv(x).float().view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, H + 2·Hkv, T, D)
        n_qk = self.n_heads + self.n_kv_heads
        scaled = rope is not None and rope.prescaled  # queries already scaled by 1/√D
        if rope is not None:  # queries and keys rotate together, values pass through
            q, k = rotate_queries_keys(heads[:, :n_qk], rope).split((self.n_heads, self.n_kv_heads), dim=1)
        else:
            q, k = heads[:, : self.n_heads], heads[:, self.n_heads : n_qk]
        v = heads[:, n_qk:]  # (B, Hkv, T, D)
        mask = None
        if cache is not None:
            k, v, mask = cache.update(self.layer, k, v)  # (B, Hkv, S, D); mask (B, 1, T, S) or None
        if keep is not None and keep < T:
            q = q[:, :, T - keep :]  # (B, H, keep, D)
            mask = mask[:, :, T - keep :] if mask is not None else None
        y = self.attend(q, k, v, mask, 1.0 if scaled else 1.0 / math.sqrt(self.head_dim))  # (B, H, T', D)
        return self.out(y.transpose(1, 2).reshape(B, q.shape[2], -1))

    def attend(self, q, k, v, mask, scale: float) -> torch.Tensor:
        """softmax(scale·q·kᵀ + mask)·v with grouped-query heads; q (B, H, T, D), k/v (B, Hkv, S, D).

        One new position (decoding): the G = H/Hkv query heads of a group are stacked as
        G rows against their shared key/value head, so nothing is copied, and the three
        small products run directly (PyTorch's fused CPU kernel costs more than the math
        at this size, bfloat16 above all); under torch.compile the two products are
        written as sums of elementwise products, which inductor fuses into loops. Several
        positions: keys and values are repeated per query head (PyTorch's CPU kernel
        is far slower with its own grouped-query option). Long causal windows in float32
        without gradients (scoring, prefill) go to tokenloom's own CPU kernel when it is
        available (model/native.py).
        """
        B, H, T, D = q.shape
        groups = H // self.n_kv_heads
        if mask is None and native.attention_usable(q, k, v):  # long causal windows, float32, no gradient
            return native.causal_attention(q, k, v, scale)  # (B, H, T, D)
        if T == 1:
            # Under inductor the two products are written as sums of elementwise products:
            # fused loops over the cache instead of two batched products around a softmax,
            # which saves dispatch at batch 1. Eagerly the products are faster.
            fused = torch.compiler.is_compiling()
            q = q.reshape(B, self.n_kv_heads, groups, D)  # (B, Hkv, G, D)
            if fused:
                scores = (q.unsqueeze(-2) * k.unsqueeze(2)).sum(-1)  # (B, Hkv, G, S)
            else:
                scores = torch.matmul(q, k.transpose(-1, -2))  # (B, Hkv, G, S)
            if scale != 1.0:
                scores = scores * scale
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)  # (B, Hkv, G, S)
            y = (weights.unsqueeze(-1) * v.unsqueeze(2)).sum(-2) if fused else torch.matmul(weights, v)
            return y.view(B, H, 1, D)  # (B, H, 1, D)
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)  # (B, H, S, D)
            v = v.repeat_interleave(groups, dim=1)  # (B, H, S, D)
        if mask is None and T <= MATH_ATTENTION_MAX_T and torch.compiler.is_compiling():
            # Short causal windows under inductor (training): the plain products, with scale,
            # mask and softmax (and their gradients) fused around them, beat the fused CPU
            # kernel at these sizes (docs/performance.md, "Training against nanoGPT"). The
            # (T, S) scores are kept for the backward pass, hence the bound on T.
            S = k.shape[2]
            scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, T, S)
            later = torch.arange(S, device=q.device)[None, :] > torch.arange(S - T, S, device=q.device)[:, None]
            weights = torch.softmax(scores.masked_fill(later, float("-inf")), dim=-1)  # later: (T, S)
            return torch.matmul(weights, v)  # (B, H, T, D)
        S = k.shape[2]
        if mask is None and T < S:  # the last T of S positions: is_causal would align them with the first T
            mask = torch.arange(S, device=q.device)[None, :] <= torch.arange(S - T, S, device=q.device)[:, None]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, scale=scale)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) · up(x)), gate and up fused; or GELU: proj(gelu(fc(x)))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gated = config.mlp == "swiglu"
        width = 2 * config.hidden_dim if self.gated else config.hidden_dim
        self.up = Linear(config.dim, width, bias=config.bias)
        self.down = Linear(config.hidden_dim, config.dim, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        if self.gated and native.swiglu_usable(h):  # long inputs in float32 without gradients: one pass
            h = native.swiglu(h)
        elif self.gated:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return self.down(h)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int = 0):
        super().__init__()
        self.attn_norm, self.attn = make_norm(config), Attention(config, layer)
        self.mlp_norm, self.mlp = make_norm(config), MLP(config)

    def forward(self, x, h, rope: Rope | None, cache, keep: int | None = None):
        """The block on the residual stream x + h, where h is the previous block's last output
        (None for the first block); (B, T, C) each. Returns the stream and this block's MLP
        output, (B, T, C) each, or (B, keep, C) for the last `keep` positions (see Attention).
        Each residual add is left to the norm that follows it, to run in one pass with it."""
        x, normed = add_norm(self.attn_norm, x, h)
        h = self.attn(normed, rope, cache, keep)
        x, normed = add_norm(self.mlp_norm, x[:, x.shape[1] - h.shape[1] :], h)
        return x, self.mlp(normed)


def _embedding(rows: int, dim: int) -> nn.Embedding:
    """nn.Embedding with its default N(0, 1) start, except on the meta device (loaders build there and
    assign the file's tensors), where PyTorch's normal_ would import torch._dynamo: 1.7 s of every load."""
    weight = torch.empty(rows, dim)
    if not weight.is_meta:
        nn.init.normal_(weight)
    return nn.Embedding(rows, dim, _weight=weight)


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = _embedding(config.vocab_size, config.dim)
        self.pos_embed = _embedding(config.max_seq_len, config.dim) if config.positions == "learned" else None
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.n_layers))
        self.norm = make_norm(config)
        self.head = None if config.tie_embeddings else Linear(config.dim, config.vocab_size, bias=False)
        self.drop = nn.Dropout(config.dropout)
        self.rope_cos: torch.Tensor | None = None
        self.rope_sin: torch.Tensor | None = None
        self.packed_output: Packed | None = None
        self.fused_decoder = None  # native GGUF models: every layer of a decode step in one call (model/fused_decode.py)
        self.precision = "float32"  # what the loader made of the weights: float32 | bfloat16 | native

    # -- set-up ------------------------------------------------------------
    def init_weights(self, seed: int | None = None) -> None:
        """GPT-2 style initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2·layers)."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.zeros_(p) if name.endswith("bias") else nn.init.ones_(p)
                continue
            std = 0.02 / math.sqrt(2 * self.config.n_layers) if name.endswith(("out.weight", "down.weight")) else 0.02
            with torch.no_grad():
                p.normal_(0.0, std, generator=generator)

    @property
    def device(self) -> torch.device:
        """Where the weights are (a native model's embedding holds codes, not a weight)."""
        return next(itertools.chain(self.parameters(), self.buffers())).device

    def setup_rope(self, length: int | None = None) -> None:
        if self.config.positions == "rope":
            cos, sin = rope_tables(self.config, length or self.config.max_seq_len)
            self.rope_cos, self.rope_sin = cos.to(self.device), sin.to(self.device)

    def new_kv_pool(self) -> KVPool:
        """An empty KV cache for this model's shapes (float32, as the attention that reads it), on its device."""
        c = self.config
        return KVPool(c.n_layers, c.n_kv_heads, c.head_dim, c.max_seq_len, torch.float32, self.device)

    def pack_for_inference(self) -> None:
        """Prepack every projection and the output layer for fast decoding (see model/kernels.py)."""
        for module in self.modules():
            if isinstance(module, Linear):
                module.pack()
        tied = self.embed.weight.detach() if self.head is None else None
        self.packed_output = Packed(tied) if tied is not None and Packed.supported(tied) else None

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits (..., V) from final hidden states (..., C): the output layer, or the tied embedding."""
        if self.head is not None:
            return self.head(hidden)
        return packed_linear(hidden, self.embed.weight, None, self.packed_output)

    # -- the forward pass --------------------------------------------------
    def hidden(
        self,
        ids: torch.Tensor,
        *,
        cache=None,
        keep: int | None = None,
    ) -> torch.Tensor:
        """Final hidden states (B, T, C), after the last norm, for ids (B, T).

        cache: a view of the runtime's KV cache (`KVPool.prefill_view` / `decode_view`),
        which gives each token's position and stores the keys and values; None for
        teacher forcing (positions 0..T-1, plain causal attention).
        keep: return the last `keep` positions only, (B, keep, C). Nothing after the last
        block's keys and values depends on the other positions, so that block computes its
        queries, attention and MLP for these positions alone (scoring, generation).
        """
        B, T = ids.shape
        if cache is not None:
            positions = cache.positions().expand(B, T)  # (B, T)
        else:
            positions = torch.arange(T, device=ids.device).expand(B, T)  # (B, T)
        x = self.embed(ids)  # (B, T, C)
        if T == 1 and self.fused_decoder is not None and self.fused_decoder.takes(cache):
            x = self.fused_decoder(x.view(B, -1), cache)  # (B, C): the residual stream after the last block
            return self.norm(x.view(B, 1, -1))
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions)
        rope = None
        if self.config.positions == "rope":
            if self.rope_cos is None:  # tables for the whole context, made once
                self.setup_rope()
            if T == 1:  # decoding: one rotation matrix per head
                c = self.config
                rope = Rope.rotations(rope_matrices(self.rope_cos[positions[:, 0]], self.rope_sin[positions[:, 0]],
                                                    c.n_heads, c.n_kv_heads))  # (B, H + Hkv, D, D)
            else:
                rope = Rope.angles(self.rope_cos[positions].unsqueeze(1),
                                   self.rope_sin[positions].unsqueeze(1))  # (B, 1, T, D) each
        x = self.drop(x)
        last, h = len(self.blocks) - 1, None
        for i, block in enumerate(self.blocks):
            x, h = block(x, h, rope, cache, keep if i == last else None)  # (B, T, C); the last (B, keep, C)
        return add_norm(self.norm, x, h)[1]

    def forward(
        self,
        ids: torch.Tensor,
        *,
        cache=None,
        targets: torch.Tensor | None = None,
        last_only: bool = False,
        keep: int | None = None,
    ):
        """Logits (B, T, V) for ids (B, T); with `targets`, also the mean cross-entropy.

        cache: as in `hidden`. last_only: logits (B, 1, V) for the last position only
        (generation); keep: for the last `keep` positions (scoring continuations).
        """
        x = self.hidden(ids, cache=cache, keep=1 if last_only else keep)
        logits = self.project(x)  # (B, T, V)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        return logits, loss
