"""A whole decode step in one call, for Llama-family models on GGUF blocks (csrc/qdecode.c).

Decoding one token per sequence runs about twenty small operations per layer. Through
PyTorch each costs a few microseconds of dispatch, which at batch 1 adds up to more
than the products themselves; `tl_decode` runs every layer (norms, products on the
file's blocks, rotary embedding, attention over the runtime's KV pool, SwiGLU, residual
adds) in one parallel region, and Python is left with the embedding lookup, the final
norm and the output layer. It is used for decode steps of native-precision models in
eager mode without gradients; prefill, scoring, training and `torch.compile` take the
module path, whose products are the same block kernels.
"""

from __future__ import annotations

import ctypes
import logging

import torch

from tokenloom.model import blocks
from tokenloom.model.kv_cache import DecodeView
from tokenloom.model.rope import Rope

log = logging.getLogger(__name__)


class FusedDecoder:
    """The step's C description of a model (weights, norms, rope tables), built once at load."""

    def __init__(self, model, lib):
        c = model.config
        layers = list(model.blocks)
        self.lib, self.layers = lib, len(layers)
        self._keep = []  # the tensors whose memory the C structures point to

        def weights(get):
            array = (blocks._Weight * len(layers))()
            for i, block in enumerate(layers):
                linear = get(block)
                array[i] = blocks._Weight(linear.code, linear.out_features, linear.in_features, linear.data.data_ptr())
                self._keep.append(linear.data)
            return array

        def norms(get):
            tensors = [get(block).weight.detach().float().contiguous() for block in layers]
            self._keep.extend(tensors)
            return (ctypes.c_void_p * len(layers))(*[t.data_ptr() for t in tensors])

        rope = Rope.tables(model.rope_cos.contiguous(), model.rope_sin.contiguous())  # (L, D) each
        self._keep.extend((rope.cos, rope.sin))
        self._arrays = [norms(lambda b: b.attn_norm), norms(lambda b: b.mlp_norm),
                        weights(lambda b: b.attn.qkv), weights(lambda b: b.attn.out),
                        weights(lambda b: b.mlp.up), weights(lambda b: b.mlp.down)]
        self.struct = blocks._Model(c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden_dim,
                                    rope.cos.shape[0], c.norm_eps, *self._arrays,
                                    rope.cos.data_ptr(), rope.sin.data_ptr())
        self._cache_key, self._cache = None, None

    @classmethod
    def build(cls, model) -> "FusedDecoder | None":
        """The fused step for `model`, or None (with a WARNING saying why) when it cannot take it."""
        from tokenloom.model.quant import BlockLinear

        lib = blocks.library()
        if lib is None:
            return None  # model/blocks.py has said why
        c = model.config
        reason = None
        if (c.norm, c.mlp, c.positions, c.bias) != ("rmsnorm", "swiglu", "rope", False):
            reason = f"the architecture ({c.norm}, {c.mlp}, {c.positions} positions, bias={c.bias}) is not Llama's"
        else:
            linears = [m for b in model.blocks for m in (b.attn.qkv, b.attn.out, b.mlp.up, b.mlp.down)]
            dense = [type(m).__name__ for m in linears if not isinstance(m, BlockLinear)]
            if dense:
                reason = f"{len(dense)} of its matrices are not in supported GGUF blocks ({dense[0]})"
        if reason is None:
            if model.rope_cos is None:
                model.setup_rope()
            decoder = cls(model, lib)
            if lib.tl_decode_check(ctypes.byref(decoder.struct)) == 0:
                return decoder
            reason = "its shapes do not fit the kernel's blocks"
        log.warning("decode steps of this model run layer by layer through PyTorch, slower: %s", reason)
        return None

    def takes(self, cache) -> bool:
        """Whether this step can run a decode over `cache` here and now."""
        return (
            isinstance(cache, DecodeView) and cache.pool.dtype == torch.float32 and cache.pool.device.type == "cpu"
            and not torch.is_grad_enabled() and not torch.compiler.is_compiling()
        )

    def _cache_struct(self, pool) -> blocks._Cache:
        key = (id(pool), pool.k[0].data_ptr(), pool.v[0].data_ptr(), pool.slots, pool.capacity)
        if key != self._cache_key:
            k = (ctypes.c_void_p * self.layers)(*[t.data_ptr() for t in pool.k])
            v = (ctypes.c_void_p * self.layers)(*[t.data_ptr() for t in pool.v])
            self._cache, self._cache_key = (blocks._Cache(k, v, pool.slots, pool.capacity), k, v), key
        return self._cache[0]

    def __call__(self, x: torch.Tensor, view: DecodeView) -> torch.Tensor:
        """x (B, C) float32, the embedded tokens → the residual stream after the last layer (B, C)."""
        x = x.float().contiguous()
        slots = view.slot_index.contiguous()
        positions = view.lengths.contiguous()
        status = self.lib.tl_decode(ctypes.byref(self.struct), ctypes.byref(self._cache_struct(view.pool)),
                                    x.shape[0], slots.data_ptr(), positions.data_ptr(), x.data_ptr(),
                                    torch.get_num_threads())
        if status != 0:
            reason = {1: "a position or slot outside the KV pool", 2: "out of memory"}.get(status, f"error {status}")
            raise RuntimeError(f"tokenloom's fused decode step failed: {reason}")
        return x
