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


NUCLEUS_PROBES = (1024, 8192)  # candidate counts tried, in turn, before top-p sorts whole rows


def nucleus_probe(probs: torch.Tensor, p: float, min_keep: int = 0):
    """Top-p without a full sort, when the nucleus surely lies inside the best M tokens, M the
    first of NUCLEUS_PROBES that holds it (a peaked row needs 1024, a flat one at low
    temperature up to 8192; a vocabulary under 6·M, or min_keep ≥ M, rules M out).

    probs: (B, V) float64. If the best M-1 tokens of every row already hold mass ≥ p,
    every token from the M-th on has at least p above it and is dropped, so sorting the
    best M decides everything. The mass outside them is their actual float64 sum (not
    1 − Σ best M, which would trust the softmax to sum to 1), so this path keeps exactly
    what the full sort keeps. Returns (probs worst first, order, ids, rest mass), or None.
    """
    for m in NUCLEUS_PROBES:
        if probs.shape[-1] < 6 * m or min_keep >= m:
            return None
        top = torch.topk(probs, m, dim=-1)  # (B, M) best first
        if bool((top.values[:, :-1].sum(dim=-1) >= p).all()):
            break
    else:
        return None
    last = top.values[:, -1:]  # (B, 1) topk picks among tokens tied here at random, not by lowest id
    if bool(((probs == last).sum(-1) != (top.values == last).sum(-1)).any()):
        return None
    ids = top.indices.sort(dim=-1).values  # (B, M) ascending ids
    values, order = torch.sort(probs.gather(-1, ids), dim=-1, descending=True, stable=True)  # (B, M)
    outside = probs.scatter(-1, ids, 0.0)  # (B, V) the tokens the probe did not sort
    rest = outside.sum(dim=-1, keepdim=True)  # (B, 1)
    return values.flip(-1), order.flip(-1), ids, rest
