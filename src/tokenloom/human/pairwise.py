"""Pairwise preferences: win/tie/loss counts, Bradley–Terry, Elo, position bias.

Bradley–Terry: P(i beats j) = σ(θ_i - θ_j). A judgement gives i a score s of 1
(i better), 0 (j better) or 1/2 (tie, and "both bad", which says neither is
better), as Chatbot Arena counts ties. The fit maximises

    ℓ(θ) = Σ_k s_k log σ(θ_i - θ_j) + (1 - s_k) log σ(θ_j - θ_i)  -  α Σ θ²

by Newton's method on the aggregated counts (W_ij = score of i against j,
N_ij = comparisons of i and j), with Σθ = 0 fixing the free offset. With α = 0
this is the maximum-likelihood estimate, which exists only when every system has
scored against someone and been scored against (the "wins" graph is strongly
connected, Zermelo 1929); `fit_bradley_terry` then uses a small α and says so.

Ratings are reported on the Arena scale, 1000 + 400·θ / ln 10: 400 points are
odds of 10 to 1.

Elo: the online update R_i += K (s - E), E = 1 / (1 + 10^((R_j - R_i)/400)),
over judgements in the order they were made; unlike Bradley–Terry it depends on
that order, so it is a cross-check, not the ranking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tokenloom.errors import InvalidArgument
from tokenloom.human.stats import Estimate, percentile_interval, wilson

SCORE = {"first": 1.0, "second": 0.0, "tie": 0.5, "both_bad": 0.5}
ARENA_SCALE = 400 / math.log(10)
FALLBACK_ALPHA = 0.01


@dataclass(frozen=True)
class Comparison:
    """One judgement: systems i and j (indices), the score of i, the cluster
    (item) it belongs to, and whether i was shown on the left."""

    i: int
    j: int
    score: float
    cluster: int = 0
    i_left: bool = True


def _columns(comparisons: Sequence[Comparison]) -> tuple[np.ndarray, ...]:
    """i, j, score and cluster of every comparison as arrays."""
    return tuple(np.array([getattr(c, name) for c in comparisons], dtype=dtype)
                 for name, dtype in (("i", int), ("j", int), ("score", float), ("cluster", int)))


def counts(n: int, comparisons, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """W (score of row against column) and N (comparisons), n × n, optionally
    weighted per cluster (bootstrap). `comparisons` may be `_columns`' arrays."""
    i, j, score, cluster = comparisons if isinstance(comparisons, tuple) else _columns(comparisons)
    w = np.ones(i.size) if weights is None else np.asarray(weights)[cluster]
    wins = np.bincount(i * n + j, w * score, n * n) + np.bincount(j * n + i, w * (1 - score), n * n)
    games = np.bincount(i * n + j, w, n * n) + np.bincount(j * n + i, w, n * n)
    return wins.reshape(n, n), games.reshape(n, n)


def mle_exists(wins: np.ndarray) -> bool:
    """Is the graph with an edge i -> j whenever i scored against j strongly connected?"""
    n = wins.shape[0]
    if n < 2:
        return False
    reach = (wins > 0) | np.eye(n, dtype=bool)
    for _ in range(n):  # repeated squaring would do too; n is small
        reach = reach | ((reach.astype(int) @ reach.astype(int)) > 0)
    return bool(reach.all())


def bradley_terry(wins: np.ndarray, games: np.ndarray, alpha: float = 0.0,
                  tol: float = 1e-12, max_iter: int = 200) -> np.ndarray:
    """θ (Σθ = 0) maximising the penalised likelihood of the counts, by Newton steps."""
    n = wins.shape[0]
    if alpha < 0:
        raise InvalidArgument(f"alpha (the L2 penalty) must be >= 0; got {alpha}")
    theta = np.zeros(n)
    ones = np.ones((n, n)) / n
    for _ in range(max_iter):
        p = 1 / (1 + np.exp(theta[None, :] - theta[:, None]))  # p_ij = σ(θ_i - θ_j)
        gradient = (wins - games * p).sum(axis=1) - 2 * alpha * theta
        curvature = games * p * (1 - p)
        hessian = curvature - np.diag(curvature.sum(axis=1)) - 2 * alpha * np.eye(n)
        # -H is singular along (1, ..., 1) when α = 0; adding that direction's
        # projector makes it invertible without moving the step off Σθ = 0
        step = np.linalg.solve(-hessian + ones, gradient)
        theta = theta + step
        theta -= theta.mean()
        if np.max(np.abs(step)) < tol:
            break
    return theta


def fit_bradley_terry(n: int, comparisons, weights=None) -> tuple[np.ndarray, bool]:
    """(θ, regularised): the MLE when it exists, else the fit with α = FALLBACK_ALPHA."""
    wins, games = counts(n, comparisons, weights)
    if mle_exists(wins):
        return bradley_terry(wins, games), False
    return bradley_terry(wins, games, alpha=FALLBACK_ALPHA), True


def arena_rating(theta: float) -> float:
    return float(1000 + ARENA_SCALE * theta)


def bradley_terry_table(systems: Sequence[str], comparisons: Sequence[Comparison], n_clusters: int,
                        n_samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Per system: θ and Arena-scale rating with a bootstrap interval (items
    resampled), sorted best first; plus the interval of every θ_i - θ_j."""
    n = len(systems)
    columns = _columns(comparisons)
    theta, regularised = fit_bradley_terry(n, columns)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=n_samples).astype(float)
    samples = np.array([fit_bradley_terry(n, columns, w)[0] for w in weights])
    rows = []
    for k, system in enumerate(systems):
        low, high = percentile_interval(samples[:, k], confidence)
        rows.append({"system": system, "theta": float(theta[k]), "theta_low": low, "theta_high": high,
                     "rating": arena_rating(theta[k]), "rating_low": arena_rating(low),
                     "rating_high": arena_rating(high)})
    rows.sort(key=lambda r: -r["theta"])
    differences = {}
    for a in range(n):
        for b in range(a + 1, n):
            low, high = percentile_interval(samples[:, a] - samples[:, b], confidence)
            differences[f"{systems[a]} - {systems[b]}"] = Estimate(float(theta[a] - theta[b]), low, high,
                                                                    n_clusters).to_dict()
    return {"systems": rows, "differences": differences, "regularised": regularised,
            "alpha": FALLBACK_ALPHA if regularised else 0.0, "bootstrap": n_samples}


def elo(systems: Sequence[str], comparisons: Sequence[Comparison], k: float = 4.0,
        initial: float = 1000.0) -> dict[str, float]:
    """Online Elo over the comparisons in their order (K = 4, as Chatbot Arena used)."""
    ratings = np.full(len(systems), initial)
    for c in comparisons:
        expected = 1 / (1 + 10 ** ((ratings[c.j] - ratings[c.i]) / 400))
        ratings[c.i] += k * (c.score - expected)
        ratings[c.j] -= k * (c.score - expected)
    return {s: float(r) for s, r in zip(systems, ratings)}


def win_matrix(systems: Sequence[str], comparisons: Sequence[Comparison]) -> dict:
    """{row: {column: {"win", "tie", "loss"}}}: how the row system fared against the column one."""
    table = {a: {b: {"win": 0, "tie": 0, "loss": 0} for b in systems if b != a} for a in systems}
    for c in comparisons:
        a, b = systems[c.i], systems[c.j]
        key = "win" if c.score == 1 else "loss" if c.score == 0 else "tie"
        table[a][b][key] += 1
        table[b][a][{"win": "loss", "loss": "win", "tie": "tie"}[key]] += 1
    return table


def position_bias(comparisons: Sequence[Comparison], confidence: float = 0.95) -> dict:
    """How often the left output wins among decisive judgements (no ties), with a
    Wilson interval; 0.5 means no bias."""
    decisive = [c for c in comparisons if c.score in (0.0, 1.0)]
    left_wins = sum(1 for c in decisive if (c.score == 1.0) == c.i_left)
    estimate = wilson(left_wins, len(decisive), confidence)
    return {"left_wins": left_wins, "decisive": len(decisive), "ties": len(comparisons) - len(decisive),
            "rate": estimate.value, "low": estimate.low, "high": estimate.high}
