"""Rotary positions (RoPE, Su et al. 2021): the tables, the two ways of applying them, and
`Rope`, the named inputs a forward pass hands to every attention layer.

Each pair (x_i, x_{i+D/2}) of a query or key head turns by the angle p · θ^(-2i/D) of
its position p. A forward pass applies that in one of two modes, named by `Rope.mode`:

    "angles"    cos, sin (B, 1, T, D) at each token's position; `apply_rope` turns the
                pairs, and attention scales q·kᵀ by 1/√D afterwards (any T).
    "matrices"  one position per row (decoding): a (D, D) rotation per head,
                (B, H + Hkv, D, D), that turns all query and key heads in one product;
                the queries' matrices already carry 1/√D, so attention scales by 1.

The fused C decode step (fused_decode.py) takes neither: it reads the whole tables,
`Rope.tables(...)`, mode "tables", and looks each row's position up itself.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from tokenloom.model import native
from tokenloom.model.config import ModelConfig

ROPE_MODES = ("angles", "matrices", "tables")


class Rope(NamedTuple):
    """The rotary inputs of one forward pass; `mode` says which tensors are set (module docstring)."""

    mode: str
    cos: torch.Tensor | None = None  # "angles": (B, 1, T, D); "tables": (L, D)
    sin: torch.Tensor | None = None
    matrices: torch.Tensor | None = None  # "matrices": (B, H + Hkv, D, D), queries scaled by 1/√D

    @classmethod
    def angles(cls, cos: torch.Tensor, sin: torch.Tensor) -> Rope:
        return cls("angles", cos=cos, sin=sin)

    @classmethod
    def rotations(cls, matrices: torch.Tensor) -> Rope:
        return cls("matrices", matrices=matrices)

    @classmethod
    def tables(cls, cos: torch.Tensor, sin: torch.Tensor) -> Rope:
        return cls("tables", cos=cos, sin=sin)

    @property
    def prescaled(self) -> bool:
        """Whether the queries come out of the rotation already scaled by 1/√D."""
        return self.mode == "matrices"


def rope_tables(config: ModelConfig, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (length, head_dim): angle(p, i) = p · θ^(-2i/d), halves repeated."""
    half = config.head_dim // 2
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, half, dtype=torch.float32) / half))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)  # (L, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (L, D)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_i, x_{i+D/2}) by the position's angle. x: (B, H, T, D); cos/sin: (B, 1, T, D)."""
    if native.rope_usable(x, cos, sin):  # long float32 inputs without gradients: one pass
        return native.rope(x, cos, sin)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def rope_matrices(cos: torch.Tensor, sin: torch.Tensor, n_heads: int, n_kv_heads: int) -> torch.Tensor:
    """The rotation of one position as a matrix per head, queries pre-scaled by 1/√D.

    cos/sin: (B, D) for one position per row. rope(x) = x·cos + rot(x)·sin, where
    rot(x) = (−x_{D/2:}, x_{:D/2}), is the row vector x times R = diag(cos) + P·diag(sin)
    with P the signed swap of halves. Decoding applies it to all query and key heads
    in one batched product, (B, H + Hkv, 1, D) @ (B, H + Hkv, D, D); the attention
    scale 1/√D rides on the query heads' matrices. Returns (B, H + Hkv, D, D).
    """
    B, D = cos.shape
    half = D // 2
    R = torch.diag_embed(cos)  # (B, D, D)
    idx = torch.arange(half)
    R[:, idx + half, idx] = -sin[:, :half]  # rot[j] = −x[j + D/2]
    R[:, idx, idx + half] = sin[:, half:]  # rot[j + D/2] = x[j]
    scale = torch.full((n_heads + n_kv_heads, 1, 1), 1.0)
    scale[:n_heads] = 1.0 / math.sqrt(D)
    return R[:, None] * scale  # (B, H + Hkv, D, D)


def rotate_queries_keys(heads: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Queries and keys (B, H + Hkv, T, D) turned by `rope`, in its mode."""
    if rope.mode == "matrices":  # one position: one product for every head
        return torch.matmul(heads, rope.matrices)
    if rope.mode == "angles":
        return apply_rope(heads, rope.cos, rope.sin)
    raise ValueError(f"attention takes Rope mode 'angles' or 'matrices', got {rope.mode!r}")
