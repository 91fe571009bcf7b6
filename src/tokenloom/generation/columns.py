"""Rows narrowed to the columns that are still finite, and back.

After top-k 40 a row of a 49,152-token vocabulary has 40 finite scores. Steps that look
at scores alone (top-p, min-p, typical, temperature) then run on those columns, kept in
ascending id order so that ties still go to the lowest id, instead of on full rows.
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")
NARROW_SHARE = 8  # narrow a row once at most 1/8 of its scores are finite


def narrow(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The part of each row a sort, or the rest of a chain, must see: its finite columns
    (B, m) with their ids ascending (B, m), m the most any row keeps (a row with fewer gets
    -inf columns); or (scores, None), the whole row, when more than 1/NARROW_SHARE survive.

    Ascending ids keep lowest-id tie-breaking for a stable sort of the columns; removed
    (-inf) tokens have probability 0 and cannot change any cumulative mass.
    """
    alive = int(torch.count_nonzero(scores > NEG_INF, dim=-1).max())
    if alive > scores.shape[-1] // NARROW_SHARE:
        return scores, None
    ids = torch.topk(scores, max(alive, 1), dim=-1).indices.sort(dim=-1).values  # (B, m)
    return scores.gather(-1, ids), ids


def widen(scores: torch.Tensor, ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Narrowed scores (B, m) back to full rows (B, V), -inf outside their ids."""
    full = torch.full((scores.shape[0], vocab_size), NEG_INF, dtype=scores.dtype, device=scores.device)
    return full.scatter_(-1, ids, scores)
