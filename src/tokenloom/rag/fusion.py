"""Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009).

    RRF(d) = Σ_m 1 / (k + rank_m(d)),   rank_m counted from 1, k = 60 as in the paper;
    a list that does not contain d adds nothing.

    >>> reciprocal_rank_fusion([[7, 3], [3, 9]], k=60)  # doctest: +ELLIPSIS
    [(3, 0.03252...), (7, 0.01639...), (9, 0.01612...)]

(3: 1/62 + 1/61; 7: 1/61; 9: 1/62.)

Ties (equal fused score) go to the item with the better best rank in any list,
then to the smaller id, so the order never depends on dict or set iteration.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from tokenloom.errors import InvalidArgument

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]], k: int = RRF_K) -> list[tuple[Hashable, float]]:
    """(item, fused score) for every item of the rankings, best first."""
    if k < 0:
        raise InvalidArgument(f"the RRF constant k must be >= 0, got {k}")
    scores: dict = {}
    best_rank: dict = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            best_rank[item] = min(best_rank.get(item, rank), rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], best_rank[pair[0]], pair[0]))
