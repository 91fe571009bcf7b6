"""Intervals and correlations for human ratings.

* Wilson score interval of a proportion p̂ = k/n (good at small n and near 0 or 1,
  where the normal p̂ ± z·sqrt(p̂(1-p̂)/n) breaks down):

      centre = (p̂ + z²/2n) / (1 + z²/n),  half = z·sqrt(p̂(1-p̂)/n + z²/4n²) / (1 + z²/n)

* Bootstrap intervals resample *items*, not single ratings: the ratings of one
  item are correlated (the same text, rated by several people), and treating
  them as independent would give intervals that are too narrow. Percentile
  interval: the α/2 and 1 - α/2 quantiles of the statistic over B resamples.

* Pearson r, Spearman ρ (Pearson of average ranks) and Kendall τ_b
  ((C - D) / sqrt((P - T_x)(P - T_y)), ties corrected): equal to scipy's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from tokenloom.errors import InvalidArgument

DEFAULT_BOOTSTRAP = 1000


@dataclass(frozen=True)
class Estimate:
    """A number with its interval (`low` <= `value` <= `high` is usual, not guaranteed
    for percentile bootstrap) and how many observations it rests on."""

    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def excludes(self, point: float) -> bool:
        return not self.low <= point <= self.high


def z_value(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise InvalidArgument(f"confidence must be between 0 and 1 (exclusive); got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """Wilson interval of successes/n. wilson(8, 10) -> value 0.8, about [0.490, 0.943]."""
    if n < 0 or not 0 <= successes <= n:
        raise InvalidArgument(f"need 0 <= successes <= n; got {successes} of {n}")
    if n == 0:
        return Estimate(float("nan"), 0.0, 1.0, 0)
    z = z_value(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def cluster_weights(n_clusters: int, n_samples: int, seed: int) -> np.ndarray:
    """(n_samples, n_clusters) counts: how often each cluster is drawn in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=n_samples).astype(float)


def percentile_interval(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    values = np.asarray(samples, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_mean(values: Sequence[float], clusters: Sequence, n_samples: int = DEFAULT_BOOTSTRAP,
                   confidence: float = 0.95, seed: int = 0) -> Estimate:
    """Mean of `values` with a bootstrap interval that resamples whole clusters
    (one cluster per item: all of its ratings go in or out together)."""
    values = np.asarray(values, float)
    if values.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    keys = {c: k for k, c in enumerate(dict.fromkeys(clusters))}
    index = np.array([keys[c] for c in clusters])
    sums = np.bincount(index, weights=values, minlength=len(keys))
    counts = np.bincount(index, minlength=len(keys)).astype(float)
    weights = cluster_weights(len(keys), n_samples, seed)
    means = (weights @ sums) / np.maximum(weights @ counts, 1e-300)
    low, high = percentile_interval(means, confidence)
    return Estimate(float(values.mean()), low, high, int(values.size))


def bootstrap_statistic(n_clusters: int, statistic: Callable[[np.ndarray], float], point: float,
                        n_samples: int = DEFAULT_BOOTSTRAP, confidence: float = 0.95,
                        seed: int = 0) -> Estimate:
    """`statistic(weights)` over cluster-resampling weights (one row per resample)."""
    weights = cluster_weights(n_clusters, n_samples, seed)
    low, high = percentile_interval([statistic(w) for w in weights], confidence)
    return Estimate(point, low, high, n_clusters)


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise InvalidArgument(f"correlation needs two equally long lists; got {x.shape} and {y.shape}")
    return x, y


def pearson(x, y) -> float:
    """Pearson r; nan when fewer than 3 points or either side is constant."""
    x, y = _pair(x, y)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    return float((x @ y) / math.sqrt((x @ x) * (y @ y)))


def average_ranks(values) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank: [10, 20, 20, 30] -> [1, 2.5, 2.5, 4]."""
    values = np.asarray(values, float)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size)
    sorted_values = values[order]
    start = 0
    for end in range(1, values.size + 1):
        if end == values.size or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def spearman(x, y) -> float:
    x, y = _pair(x, y)
    return pearson(average_ranks(x), average_ranks(y))


def kendall_tau_b(x, y, chunk: int = 2048) -> float:
    """Kendall's τ_b over all pairs (O(n²), in chunks of rows to bound memory)."""
    x, y = _pair(x, y)
    if x.size < 3:
        return float("nan")
    concordance = untied_x = untied_y = 0.0
    for start in range(0, x.size, chunk):
        sx = np.sign(x[start:start + chunk, None] - x[None, :])
        sy = np.sign(y[start:start + chunk, None] - y[None, :])
        concordance += float((sx * sy).sum())
        untied_x += float(np.abs(sx).sum())
        untied_y += float(np.abs(sy).sum())
    if untied_x == 0 or untied_y == 0:
        return float("nan")
    return concordance / math.sqrt(untied_x * untied_y)


def correlations(x, y) -> dict:
    """{'pearson', 'spearman', 'kendall', 'n'} of two equally long lists."""
    return {"pearson": pearson(x, y), "spearman": spearman(x, y), "kendall": kendall_tau_b(x, y), "n": len(x)}
