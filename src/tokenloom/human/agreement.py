"""How much raters agree: Krippendorff's alpha, Fleiss' kappa, per-rater agreement.

Krippendorff's alpha, α = 1 - D_o / D_e, from the coincidence matrix
o_ck = Σ_u (number of c-k pairs of values in unit u) / (m_u - 1), over units with
m_u >= 2 values; n_c = Σ_k o_ck; e_ck = n_c (n_k - δ_ck) / (n - 1);
D_o = Σ o_ck δ²_ck, D_e = Σ e_ck δ²_ck with the distance δ² of the level:

    nominal   δ² = [c != k]
    ordinal   δ² = (Σ_{g=c..k} n_g - (n_c + n_k)/2)²     (values in rank order)
    interval  δ² = (c - k)²

It takes any number of raters per unit and missing ratings, and equals the
`krippendorff` package (Krippendorff 2011, "Computing Krippendorff's alpha-reliability").

Fleiss' kappa, κ = (P̄ - P̄_e) / (1 - P̄_e), with P_i = (Σ_j n_ij² - n_i) / (n_i (n_i - 1))
the agreement within unit i, P̄ their mean and P̄_e = Σ_j p_j², p_j the share of all
ratings in category j. Units with fewer than two ratings are left out; with the
same number of raters everywhere this is Fleiss (1971).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from tokenloom.errors import InvalidArgument

LEVELS = ("nominal", "ordinal", "interval")


def _value_counts(units: Sequence[Sequence], domain: Sequence | None):
    """(units × values counts, sorted value domain) from per-unit value lists."""
    values = sorted({v for unit in units for v in unit}) if domain is None else list(domain)
    index = {v: k for k, v in enumerate(values)}
    counts = np.zeros((len(units), len(values)))
    for u, unit in enumerate(units):
        for v in unit:
            if v not in index:
                raise InvalidArgument(f"value {v!r} is not in the value domain {values}")
            counts[u, index[v]] += 1
    return counts, values


def coincidences(counts: np.ndarray) -> np.ndarray:
    """o_ck: each pairable unit adds n_uc·n_uk (minus the self-pairs on the diagonal) / (m_u - 1)."""
    m = counts.sum(axis=1)
    pairable = counts[m >= 2]
    scale = 1.0 / (m[m >= 2] - 1)
    outer = np.einsum("u,uc,uk->ck", scale, pairable, pairable)
    return outer - np.diag((pairable * scale[:, None]).sum(axis=0))


def _distances(values: list, n_c: np.ndarray, level: str) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(len(values))
    if level == "interval":
        v = np.asarray(values, float)
        return (v[:, None] - v[None, :]) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(n_c)])  # cumulative[k] = Σ_{g<k} n_g
    low = np.minimum.outer(np.arange(len(values)), np.arange(len(values)))
    high = np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
    between = cumulative[high + 1] - cumulative[low]
    return (between - (n_c[low] + n_c[high]) / 2) ** 2


def krippendorff_alpha(units: Sequence[Sequence], level: str = "nominal", domain: Sequence | None = None) -> float:
    """Alpha of `units`, each the list of values its raters gave (any length).

    units=[[1, 1], [2, 2], [3, 3]] -> 1.0 (perfect agreement)."""
    if level not in LEVELS:
        raise InvalidArgument(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    counts, values = _value_counts(units, domain)
    if len(values) < 2:
        return float("nan")  # everyone gave the same single value: agreement is undefined, not perfect
    if not (counts.sum(axis=1) >= 2).any():
        return float("nan")
    o = coincidences(counts)
    n_c = o.sum(axis=0)
    n = n_c.sum()
    e = (np.outer(n_c, n_c) - np.diag(n_c)) / (n - 1)
    d = _distances(values, n_c, level)
    expected = (e * d).sum()
    return float("nan") if expected == 0 else float(1 - (o * d).sum() / expected)


def fleiss_kappa(units: Sequence[Sequence], categories: Sequence | None = None) -> float:
    """Fleiss' kappa of `units` (per-unit value lists); nan when undefined."""
    counts, _ = _value_counts(units, categories)
    n_i = counts.sum(axis=1)
    counts, n_i = counts[n_i >= 2], n_i[n_i >= 2]
    if counts.shape[0] == 0:
        return float("nan")
    p_i = ((counts ** 2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_j = counts.sum(axis=0) / n_i.sum()
    p_e = float((p_j ** 2).sum())
    return float("nan") if p_e == 1 else float((p_i.mean() - p_e) / (1 - p_e))


def agrees(a, b, level: str) -> bool:
    """Two answers agree: equal, or for ordinal scales within one point."""
    return abs(float(a) - float(b)) <= 1 if level == "ordinal" else a == b


def _consensus(values: list, level: str) -> list:
    """What the other raters of a unit said, as the answers a rater can agree with:
    the median for ordinal scales, every most frequent answer for nominal ones."""
    if level == "ordinal":
        return [float(np.median([float(v) for v in values]))]
    counts = Counter(values)
    top = max(counts.values())
    return [v for v, c in counts.items() if c == top]


def rater_agreement(answers: dict, level: str) -> dict[str, dict]:
    """Per rater, how often their answer agrees with the consensus of the other raters
    of the same unit (see `_consensus`): {rater: {"agreement": share, "units": count}}.
    `answers` maps a unit to {rater: value}. Comparing with the others' consensus
    rather than with each other rater one by one keeps one careless rater from
    dragging down everyone who shares items with them."""
    hits: dict[str, list[int]] = {}
    for by_rater in answers.values():
        for rater, value in by_rater.items():
            others = [v for other, v in by_rater.items() if other != rater]
            if others:
                hits.setdefault(rater, []).append(int(any(agrees(value, c, level) for c in _consensus(others, level))))
    return {r: {"agreement": float(np.mean(h)), "units": len(h)} for r, h in hits.items()}


def outliers(agreement: dict[str, float], gold: dict[str, float], min_gold: float = 0.6,
             spread: float = 2.5, floor: float = 0.1) -> dict[str, list[str]]:
    """Raters to look at, with the reasons: gold accuracy below `min_gold`, or
    agreement with the others below median - max(floor, spread · MAD) of all raters'
    agreements. The median absolute deviation is robust to the outliers it looks
    for; 2.5 is Leys et al. (2013)'s moderately conservative cut, and `floor` keeps
    a panel of very similar raters from flagging someone over a few answers."""
    flagged: dict[str, list[str]] = {}
    for rater, accuracy in gold.items():
        if accuracy == accuracy and accuracy < min_gold:
            flagged.setdefault(rater, []).append(f"gold accuracy {accuracy:.0%} < {min_gold:.0%}")
    values = np.array([v for v in agreement.values() if v == v])
    if values.size >= 3:
        median = float(np.median(values))
        cut = median - max(floor, spread * float(np.median(np.abs(values - median))))
        for rater, value in agreement.items():
            if value < cut:
                flagged.setdefault(rater, []).append(f"agreement {value:.0%} < {cut:.0%} (others' median {median:.0%})")
    return flagged
