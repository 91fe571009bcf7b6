"""Native precision: a GGUF file's quantized weights computed on as they are stored.

Where tokenloom's own block kernels can be built (model/blocks.py: AVX-512 VNNI, AVX2 or
portable C), every quantized matrix is a `BlockLinear`: the file's blocks, untouched,
multiplied with 8-bit activations, and a decode step runs all layers in one call
(model/fused_decode.py). What follows is the fallback where they cannot be built (no C
compiler), on PyTorch's own int4 kernel.

Decoding one token reads every weight once, so its speed is the rate at which bytes
stream from memory: 4-bit weights move a quarter of the bytes of bfloat16 ones.
PyTorch ships CPU kernels for weight-only quantized products, and llama.cpp's block
formats map onto them:

    Q4_1 block of 32: w = d·q + m,   q in 0..15
    Q4_0 block of 32: w = d·(q − 8)
    int4 kernel, group of 32 along the input: w = (q − 8)·scale + zero

so Q4_1 becomes scale = d, zero = m + 8·d, and Q4_0 scale = d, zero = 0: the same
4-bit codes, repacked once at load (`_convert_weight_to_int4pack_for_cpu`). The kernel
wants bfloat16 activations and bfloat16 scales (in float32 it runs about 40 times
slower), so native mode computes in bfloat16; rounding d and m + 8·d to bfloat16 is
the only change to the weights.

Q8_0 (one scale per block of 32, 8-bit codes) has no kernel of its own: PyTorch's
int8 kernel has one scale per output row, and requantizing to it costs +0.3%
perplexity on the output layer (the tied embedding, which every token reads whole).
Instead each 8-bit code is split into two 4-bit planes that the int4 kernel runs
exactly (`Q8Linear`); benchmarks/native_quality.py measures the choices. The
embedding lookup gathers Q8_0 rows and dequantizes them exactly. Tensors in any
other format are dequantized to bfloat16.

A long prompt is many rows at once: there the product is compute-bound and the
4-bit kernel is slower than a bfloat16 matrix product, so above `DENSE_ROWS` rows
the weight is dequantized to bfloat16 for that one product (a small cost next to
the product itself) and no dense copy is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tokenloom import private_apis as private
from tokenloom.model import blocks

GROUP = 32  # weights per block / quantization group along the input dimension
INNER_K_TILES = 8  # the packing's tile parameter (2, 4 or 8): 8 measured fastest (docs/performance.md)
DENSE_ROWS = 64  # from this many rows on, a product on file-layout blocks dequantizes its weight first
DENSE_ROWS_TILED = 256  # the same for eight-row tiles where bfloat16 products are native (measured crossover)

NATIVE_KINDS = ("Q4_0", "Q4_1", "Q8_0")  # formats both paths compute on
K_KINDS = ("Q4_K", "Q5_K", "Q6_K")  # formats only tokenloom's block kernels compute on



def int4_kernel() -> bool:
    """Whether PyTorch's int4 CPU kernel is there (private_apis.py probes it and says once when not)."""
    return private.usable("int4")


def available() -> bool:
    """Whether native precision has a fast path here: tokenloom's block kernels or PyTorch's int4 kernel."""
    return blocks.available() or int4_kernel()


def native_kinds() -> tuple[str, ...]:
    """The GGUF formats kept in their blocks here; tensors in other formats are dequantized at load."""
    return NATIVE_KINDS + K_KINDS if blocks.available() else NATIVE_KINDS


def dense_dtype() -> torch.dtype:
    """The precision a long input's product dequantizes its weight to: bfloat16 where the CPU multiplies
    it natively (AVX-512 BF16 or AMX, with the AVX-512 kernels chosen), float32 elsewhere, where
    bfloat16 products are emulated and slower (TOKENLOOM_CPU_KERNEL=avx2 reproduces that choice)."""
    native_bf16 = {"avx512_bf16", "amx_bf16"} & blocks.cpu_features()
    return torch.bfloat16 if native_bf16 and blocks.chosen_variant() == "avx512vnni" else torch.float32


def dense_from(tiled: bool) -> int | None:
    """Positions per sequence from which a block product dequantizes its weight instead; None for never.

    Measured on 2 cores (docs/performance.md): eight-row tiles with 8-bit activations run at
    110-165 GMAC/s for 64 to 512 rows, where a float32 product (no bfloat16 instructions) after
    dequantizing is 1.2-5 times slower, so there tiles take every length; against native bfloat16
    products they were faster up to about 192 rows and within 10% at 512. Since two row blocks share
    a 512-bit vector the tiles prefill 512 positions 1.6× faster than bfloat16 (1561 against 961
    tok/s), but 8-bit activations over a whole scoring window cost perplexity there (+0.50% against
    −0.00% on WikiText-2), so bfloat16 keeps long inputs from 256 rows. File-layout blocks (the
    K-quants) are slower than either from 64 rows on."""
    if not tiled:
        return DENSE_ROWS
    return DENSE_ROWS_TILED if dense_dtype() == torch.bfloat16 else None


@dataclass
class Blocks:
    """A quantized GGUF tensor's raw blocks, shaped (rows, blocks per row, bytes per block).

    Rows can be reordered and concatenated (fused projections, llama.cpp's rope row
    order) without touching the blocks themselves.
    """

    kind: str  # GGML type name: Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K
    data: torch.Tensor  # uint8 (rows, blocks, bytes)

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape[0], self.data.shape[1] * blocks.WIDTH[self.kind]

    def map_rows(self, fn) -> "Blocks":
        return Blocks(self.kind, fn(self.data))

    @staticmethod
    def cat(parts: list) -> "Blocks | torch.Tensor":
        """Row-wise concatenation; parts in different formats meet as float32."""
        if all(isinstance(p, Blocks) for p in parts) and len({p.kind for p in parts}) == 1:
            return Blocks(parts[0].kind, torch.cat([p.data for p in parts]))
        return torch.cat([p.dequantize() if isinstance(p, Blocks) else p for p in parts])

    # -- block fields ------------------------------------------------------------
    def _half(self, offset: int) -> torch.Tensor:
        """The float16 at `offset` of every block, as float32 (rows, blocks)."""
        return self.data[..., offset : offset + 2].contiguous().view(torch.float16).squeeze(-1).float()

    def _nibbles(self, offset: int) -> torch.Tensor:
        """4-bit codes (rows, blocks·32) in 0..15: byte j holds weight j (low) and j + 16 (high)."""
        raw = self.data[..., offset:]
        codes = torch.cat([raw & 0x0F, raw >> 4], dim=-1)  # (rows, blocks, 32)
        return codes.reshape(raw.shape[0], -1)

    def int4(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes (N, K) int32 in 0..15, scale (N, K/32), zero (N, K/32)) for w = (q − 8)·scale + zero."""
        d = self._half(0)
        if self.kind == "Q4_1":
            return self._nibbles(4).int(), d, self._half(2) + 8.0 * d
        if self.kind == "Q4_0":
            return self._nibbles(2).int(), d, torch.zeros_like(d)
        raise ValueError(f"{self.kind} blocks are not 4-bit")

    def int8(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Q8_0: (codes (N, K) int8, scale per block (N, K/32)) for w = scale·q."""
        if self.kind != "Q8_0":
            raise ValueError(f"{self.kind} blocks are not Q8_0")
        codes = self.data[..., 2:].contiguous().view(torch.int8).reshape(self.data.shape[0], -1)
        return codes, self._half(0)

    def dequantize(self) -> torch.Tensor:
        """The weights as float32 (N, K), exactly as the format defines them."""
        if self.kind in K_KINDS:
            return _k_dequantize(self)
        if self.kind == "Q8_0":
            codes, scale = self.int8()
            return (codes.float().view(*scale.shape, GROUP) * scale.unsqueeze(-1)).view(self.shape)
        codes, scale, zero = self.int4()
        grouped = (codes.float() - 8.0).view(*scale.shape, GROUP)
        return (grouped * scale.unsqueeze(-1) + zero.unsqueeze(-1)).view(self.shape)


def _k_dequantize(b: Blocks) -> torch.Tensor:
    N, K = b.shape
    if blocks.available():
        return blocks.block_dequantize(b.data.reshape(N, -1).contiguous(), blocks.KINDS[b.kind], N, K, torch.float32)
    from gguf import quants  # the reference implementation, in numpy: slower, and only at load
    from gguf.constants import GGMLQuantizationType

    values = quants.dequantize(b.data.reshape(N, -1).numpy(), GGMLQuantizationType[b.kind])
    return torch.from_numpy(values).float().view(N, K)


class BlockLinear(nn.Module):
    """y = x·Wᵀ with W kept in a GGUF file's blocks, on tokenloom's block kernels (model/blocks.py).

    Short inputs run on the blocks with 8-bit activations (as llama.cpp computes); from
    `dense_from` positions per sequence on (prompts, scoring: compute-bound), the weight is
    dequantized for that one product (`dense_dtype`) where that measured faster, and no
    dense copy is kept. Float32 out.
    """

    def __init__(self, b: Blocks):
        super().__init__()
        self.kind, self.code = b.kind, blocks.KINDS[b.kind]
        self.out_features, self.in_features = b.shape
        data = b.data.reshape(self.out_features, -1).contiguous()  # (N, row bytes)
        if blocks.tiled(b.kind, self.out_features):  # lanes as output rows: csrc/qinterleave.c
            data, self.code = blocks.repack(blocks.library(), data, self.code, *b.shape)
        self.register_buffer("data", data)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return blocks.dense(self.data, self.code, self.out_features, self.in_features, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        # Dense by positions per sequence, not rows, as Int4Linear: a decode batch (B, 1, K) always
        # runs on the blocks, so a sequence's numbers never depend on how many others decode beside it.
        if x.dim() >= 2 and x.shape[-2] >= DENSE_ROWS and self._dense(x.shape[-2]):  # DENSE_ROWS: the lowest limit
            dtype = dense_dtype()
            y = F.linear(rows.to(dtype), self.dequantize(dtype)).float()
        else:
            y = blocks.mm(rows.float(), self.data, self.code, self.out_features)
        return y.view(*x.shape[:-1], self.out_features)

    @property
    def tiled(self) -> bool:
        return self.code > blocks.X8

    def _dense(self, positions: int) -> bool:
        limit = dense_from(self.tiled)
        return limit is not None and positions >= limit

    def extra_repr(self) -> str:
        layout = ", eight-row tiles" if self.tiled else ""
        return f"{self.in_features} -> {self.out_features}, {self.kind} blocks{layout}"


def quantize_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round a float matrix (N, K) to 4-bit groups of 32 (each group's min to max in 15 steps).

    Returns (codes, scale, zero) for w ≈ (q − 8)·scale + zero, as `Int4Linear` takes them.
    """
    groups = weight.float().view(weight.shape[0], -1, GROUP)  # (N, K/32, 32)
    low, high = groups.amin(-1), groups.amax(-1)  # (N, K/32)
    scale = ((high - low) / 15).clamp_min(1e-12)
    codes = torch.round((groups - low.unsqueeze(-1)) / scale.unsqueeze(-1)).clamp(0, 15)
    return codes.view(weight.shape).int(), scale, low + 8 * scale


class Int4Linear(nn.Module):
    """y = x·Wᵀ with W in 4-bit groups of 32: w = (q − 8)·scale + zero, bfloat16 in and out."""

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor):
        super().__init__()
        self.out_features, self.in_features = codes.shape
        # Without the int4 kernel every product dequantizes (the same weights, much slower).
        packed = private.int4_pack(codes.int(), INNER_K_TILES) if int4_kernel() else None
        self.register_buffer("packed", packed)
        pairs = torch.stack([scale.t(), zero.t()], dim=-1)  # (K/32, N, 2)
        self.register_buffer("scales_zeros", pairs.to(torch.bfloat16).contiguous())
        self.register_buffer("codes", codes.to(torch.uint8))  # for dense products over many rows

    @classmethod
    def from_blocks(cls, blocks: Blocks) -> "Int4Linear":
        return cls(*blocks.int4())

    def dequantize(self) -> torch.Tensor:
        """W as bfloat16 (N, K), from the codes and the (bfloat16) scales and zeros the kernel uses."""
        scale, zero = (t.t().unsqueeze(-1) for t in self.scales_zeros.unbind(-1))  # (N, K/32, 1) each
        grouped = self.codes.view(self.out_features, -1, GROUP).float() - 8  # (N, K/32, 32)
        # in-place broadcasts: PyTorch's addcmul with a broadcast operand is far slower
        weight = grouped.mul_(scale).add_(zero).to(torch.bfloat16)
        return weight.view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (M, K)
        # Dense by positions per sequence, not rows: a decode batch (B, 1, K) always takes the
        # 4-bit kernel, so a sequence's numbers never depend on how many others decode beside it.
        if self.packed is None or (x.dim() >= 2 and x.shape[-2] >= DENSE_ROWS):
            y = F.linear(rows, self.dequantize())
        else:
            y = private.int4_linear(rows, self.packed, GROUP, self.scales_zeros)
        return y.view(*x.shape[:-1], self.out_features)


class Q8Linear(nn.Module):
    """Q8_0 weights computed exactly by the 4-bit kernel, as two planes of 4-bit codes.

    A Q8_0 weight is w = d·q with q in −127..127 and one d per block of 32. Split
    q = 16·hi + lo with lo in 0..15 and hi in −8..7; then

        w = (hi + 8 − 8)·(16·d) + 0      the high plane: codes hi + 8, scale 16·d, zero 0
          + (lo − 8)·d + 8·d             the low plane:  codes lo,     scale d,    zero 8·d

    and x·Wᵀ is the sum of two int4 products over the same groups of 32: 9 bits a
    weight in all (against 8.5 in the file), and the only rounding is that of d to
    bfloat16, the same as the rest of native mode.
    """

    def __init__(self, blocks: Blocks):
        super().__init__()
        codes, d = blocks.int8()
        codes = codes.int()
        high = torch.div(codes, 16, rounding_mode="floor")  # −8..7
        self.high = Int4Linear(high + 8, 16 * d, torch.zeros_like(d))
        self.low = Int4Linear(codes - 16 * high, d, 8 * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.high(x) + self.low(x)


class BlockEmbedding(nn.Module):
    """Token embedding kept in Q8_0 blocks; the rows asked for are dequantized exactly."""

    def __init__(self, blocks: Blocks, dtype: torch.dtype = torch.float32):
        super().__init__()
        codes, scale = blocks.int8()
        self.embedding_dim = codes.shape[1]
        self.register_buffer("codes", codes)  # (V, C) int8
        self.register_buffer("scale", scale)  # (V, C/32) float32
        self.dtype = dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        codes, scale = self.codes[ids], self.scale[ids]  # (..., C), (..., C/32)
        rows = codes.float().view(*scale.shape, GROUP) * scale.unsqueeze(-1)
        return rows.view(*ids.shape, self.embedding_dim).to(self.dtype)
