"""float32 arithmetic the way a C loop does it, for samplers that must equal llama.cpp's.

llama.cpp's samplers compute in float32, one element after the other: a sum is
s = fl(s + x_i) in order (torch's reductions add pairwise or in float64, which rounds
differently), and expf/logf/powf are glibc's, correctly rounded in all but rare cases.
These helpers reproduce that on NumPy arrays:

- `seq_sum`: np.add.accumulate adds strictly left to right in the array's dtype.
- `expf`, `logf`, `log2f`, `powf`: computed in float64 and rounded once to float32, which
  is the correctly rounded result (barring a double-rounding tie, about 1 in 2^29).

    >>> float(seq_sum(np.array([1e8, 1.0, -1e8], dtype=np.float32)))  # 1e8 + 1 rounds back to 1e8
    0.0
"""

from __future__ import annotations

import numpy as np
import torch

F32 = np.float32


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def seq_sum(x: np.ndarray) -> np.float32:
    """Σ x_i added left to right in float32 (0 for an empty array)."""
    if x.size == 0:
        return F32(0.0)
    return np.add.accumulate(f32(x))[-1]


def expf(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(np.asarray(x, dtype=np.float64)).astype(np.float32)


def logf(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(x, dtype=np.float64)).astype(np.float32)


def log2f(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log2(np.asarray(x, dtype=np.float64)).astype(np.float32)


def powf(base, exponent) -> np.float32:
    with np.errstate(all="ignore"):
        return F32(np.power(np.float64(F32(base)), np.float64(F32(exponent))))


def sorted_candidates(row: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(ids, logits) of a (V,) row's finite scores, best first; equal logits keep ascending ids.

    llama.cpp orders exactly equal logits by its unstable sort instead; the values, and so
    every sum below, are the same either way.
    """
    values = row.detach().float().cpu()
    ids = torch.nonzero(values > float("-inf")).squeeze(-1)  # (m,)
    order = torch.sort(values[ids], descending=True, stable=True).indices  # (m,)
    ids = ids[order]
    return ids.numpy(), values[ids].numpy()


def softmax_sorted(logits: np.ndarray) -> np.ndarray:
    """llama.cpp's softmax over logits sorted best first: p_i = expf(l_i − l_0) / Σ_j (in order)."""
    e = expf(f32(logits - logits[0]))
    return f32(e / seq_sum(e))
