"""Bootstrap confidence intervals, in one place for every metric.

Resample the segments with replacement (as many as there are), recompute the
corpus statistic on each resample, and read percentiles off the resampled values:

    low, mid, high = percentiles (100·α/2, 50, 100·(1 − α/2)) of {θ(resample_b)}, b = 1..B

with α = 1 − confidence. `mid` is the median of the resampled values, not the
plain corpus value (rouge-score's convention). Resampling draws
`RandomState(seed).choice(n, size=n)` once per sample, the draw rouge-score's
`BootstrapAggregator` makes from NumPy's global generator, so that with the same
seed both give the same intervals. numpy is imported only when an interval is asked for.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tokenloom.errors import InvalidArgument

DEFAULT_SEED = 12345


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of one number: low <= mid <= high (mid: the median)."""

    low: float
    mid: float
    high: float


def _check(n_segments: int, n_samples: int, confidence: float) -> None:
    if n_segments < 1:
        raise InvalidArgument("bootstrap needs at least one segment")
    if n_samples < 1:
        raise InvalidArgument(f"bootstrap samples must be positive; got {n_samples}")
    if not 0 <= confidence <= 1:
        raise InvalidArgument(f"confidence must be in [0, 1]; got {confidence}")


def _percentiles(samples, confidence: float):
    """Rows (low, mid, high) of the percentiles of `samples` (n_samples × k)."""
    import numpy as np

    delta = (1 - confidence) / 2
    return np.percentile(samples, 100 * np.array([delta, 0.5, 1 - delta]), axis=0)


def bootstrap_means(rows: Sequence[Sequence[float]], n_samples: int = 1000,
                    confidence: float = 0.95, seed=DEFAULT_SEED) -> list[Interval]:
    """Intervals of the column means of `rows` (one row per segment, e.g.
    [precision, recall, f]). Returns one Interval per column. `seed` may also be a
    `numpy.random.RandomState`, to continue one stream over several calls.

    rows=[[0.0], [1.0]] -> each resample's mean is 0, 0.5 or 1; mid is their median.
    """
    import numpy as np

    matrix = np.asarray(rows, dtype=float)
    _check(matrix.shape[0], n_samples, confidence)
    state = seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
    means = np.zeros((n_samples, matrix.shape[1]))
    indices = np.arange(matrix.shape[0])
    for b in range(n_samples):
        means[b, :] = np.mean(matrix[state.choice(indices, size=matrix.shape[0]), :], axis=0)
    low, mid, high = _percentiles(means, confidence)
    return [Interval(float(lo), float(mi), float(hi)) for lo, mi, hi in zip(low, mid, high)]


def bootstrap_corpus(stats: Sequence[Sequence[float]], score: Callable[[list], float],
                     n_samples: int = 1000, confidence: float = 0.95,
                     seed: int = DEFAULT_SEED) -> Interval:
    """Interval of a corpus score computed from summed per-segment statistics
    (BLEU, chrF): each resample sums its rows and calls `score(summed_row)`."""
    import numpy as np

    matrix = np.asarray(stats, dtype=np.int64)
    _check(matrix.shape[0], n_samples, confidence)
    state = np.random.RandomState(seed)
    indices = np.arange(matrix.shape[0])
    values = np.zeros((n_samples, 1))
    for b in range(n_samples):
        summed = matrix[state.choice(indices, size=matrix.shape[0])].sum(axis=0)
        values[b, 0] = score(summed.tolist())
    low, mid, high = _percentiles(values, confidence)
    return Interval(float(low[0]), float(mid[0]), float(high[0]))
