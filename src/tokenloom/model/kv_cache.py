"""Static, preallocated key/value cache.

Allocated once for (batch, kv_heads, max_len, head_dim); each forward pass writes
its keys and values at slots [start, start + T) and attention reads slots [0, start + T).
Nothing is allocated while decoding.
"""

import torch
from torch import nn


class KVCache(nn.Module):
    def __init__(self, batch: int, kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype):
        super().__init__()
        shape = (batch, kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype), persistent=False)  # (B, Hkv, S, D)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype), persistent=False)  # (B, Hkv, S, D)

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def write(self, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, Hkv, T, D) at slots [start, start+T); return every filled slot."""
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]  # (B, Hkv, end, D)

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows, in that order (sequences leaving a batch)."""
        self.k = self.k.index_select(0, rows)
        self.v = self.v.index_select(0, rows)
