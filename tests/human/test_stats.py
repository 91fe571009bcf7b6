"""Intervals and correlations, against scipy and worked examples."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tokenloom.human.stats import average_ranks, bootstrap_mean, correlations, kendall_tau_b, pearson, spearman, wilson


@pytest.mark.parametrize("k, n, low, high", [(8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (50, 100, 0.4038, 0.5962)])
def test_wilson_interval_matches_the_worked_values(k, n, low, high):
    estimate = wilson(k, n)
    assert estimate.value == k / n
    assert estimate.low == pytest.approx(low, abs=1e-4) and estimate.high == pytest.approx(high, abs=1e-4)


def test_wilson_matches_scipy_binomtest():
    for k, n in [(3, 7), (19, 20), (120, 400)]:
        ci = scipy_stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
        estimate = wilson(k, n)
        assert (estimate.low, estimate.high) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 30]).tolist() == [1, 2.5, 2.5, 4]


def test_correlations_equal_scipys_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 300).astype(float)
    y = x + rng.normal(0, 2, 300).round()
    assert pearson(x, y) == pytest.approx(scipy_stats.pearsonr(x, y)[0], abs=1e-12)
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y)[0], abs=1e-12)
    assert kendall_tau_b(x, y, chunk=37) == pytest.approx(scipy_stats.kendalltau(x, y)[0], abs=1e-12)


def test_correlation_of_a_constant_is_nan_not_a_number():
    result = correlations([1, 1, 1, 1], [1, 2, 3, 4])
    assert np.isnan(result["pearson"]) and np.isnan(result["kendall"]) and result["n"] == 4


def test_bootstrap_mean_resamples_items_so_correlated_ratings_widen_the_interval():
    rng = np.random.default_rng(1)
    item_effect = rng.normal(0, 1, 40)
    values = np.repeat(item_effect, 5) + rng.normal(0, 0.1, 200)  # five near-identical ratings per item
    by_item = bootstrap_mean(values, np.repeat(np.arange(40), 5), seed=0)
    as_if_independent = bootstrap_mean(values, np.arange(200), seed=0)
    assert by_item.value == pytest.approx(values.mean())
    assert (by_item.high - by_item.low) > 1.8 * (as_if_independent.high - as_if_independent.low)


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    covered = 0
    for trial in range(100):
        values = rng.normal(3.0, 1.0, 60)
        estimate = bootstrap_mean(values, np.arange(60), n_samples=400, seed=trial)
        covered += estimate.low <= 3.0 <= estimate.high
    assert 85 <= covered <= 100
