"""Explaining one sampling step: what a processor did to the next-token distribution.

The demo, the docs and the playground show, step by step, which tokens a processor
kept, how much probability mass they held before the step, and the top candidates
before and after it.
"""

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")


@dataclass(frozen=True)
class StepExplanation:
    """What one step did to one row. Probabilities are softmax of the scores.

    kept: tokens still possible after the step; removed: tokens this step removed.
    mass_kept: Σ P_before(i) over the kept tokens (1.0 for a step that removes nothing).
    top_before / top_after / top_removed: (token_id, prob) lists, most likely first.
    """

    name: str
    detail: str
    kept: int
    removed: int
    mass_kept: float
    top_before: list[tuple[int, float]]
    top_after: list[tuple[int, float]]
    top_removed: list[tuple[int, float]]


def top_tokens(probs: torch.Tensor, n: int, mask: torch.Tensor | None = None) -> list[tuple[int, float]]:
    """The n most likely (token_id, prob) of a (V,) row, ties to the lowest id; only where mask is True."""
    if mask is not None:
        probs = probs.masked_fill(~mask, -1.0)  # (V,)
    values, ids = torch.sort(probs, descending=True, stable=True)  # (V,), (V,)
    count = min(n, int((values >= 0).sum()))
    return [(int(i), float(p)) for i, p in zip(ids[:count].tolist(), values[:count].tolist())]


def explain_change(name: str, detail: str, before: torch.Tensor, after: torch.Tensor,
                   top: int = 10) -> StepExplanation:
    """Compare the (V,) scores of one row before and after a step."""
    p_before, p_after = before.softmax(-1), after.softmax(-1)  # (V,), (V,)
    alive_before, alive_after = before > NEG_INF, after > NEG_INF  # (V,), (V,)
    removed = alive_before & ~alive_after  # (V,)
    return StepExplanation(
        name=name, detail=detail,
        kept=int(alive_after.sum()), removed=int(removed.sum()),
        mass_kept=float(p_before[alive_after].sum()),
        top_before=top_tokens(p_before, top), top_after=top_tokens(p_after, top, alive_after),
        top_removed=top_tokens(p_before, top, removed),
    )
