"""Agreement: Krippendorff's alpha equals the `krippendorff` package; Fleiss' kappa the 1971 example."""

import numpy as np
import pytest

from tokenloom.human.agreement import fleiss_kappa, krippendorff_alpha, outliers, rater_agreement

krippendorff = pytest.importorskip("krippendorff")


def _reliability(seed: int, raters: int = 6, units: int = 50, missing: float = 0.35, values=5):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, values + 1, units)
    data = np.clip(truth[None, :] + rng.integers(-1, 2, (raters, units)), 1, values).astype(float)
    data[rng.random((raters, units)) < missing] = np.nan
    per_unit = [[data[r, u] for r in range(raters) if not np.isnan(data[r, u])] for u in range(units)]
    return data, per_unit


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize("seed", range(4))
def test_alpha_equals_the_krippendorff_package(level, seed):
    data, units = _reliability(seed)
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert abs(krippendorff_alpha(units, level) - expected) < 1e-9


def test_alpha_on_krippendorffs_textbook_example():
    # the reliability data of the package's docstring (Krippendorff 2011): nominal 0.691358, interval 0.810845
    nan = np.nan
    data = [[nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
            [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
            [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4]]
    units = [[row[u] for row in data if not np.isnan(row[u])] for u in range(15)]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.691358, abs=1e-6)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.810845, abs=1e-6)


def test_alpha_of_string_answers_is_nominal():
    units = [["first", "first"], ["second", "second"], ["tie", "first"], ["second", "second", "second"]]
    codes = {"first": 0, "second": 1, "tie": 2}
    data = np.full((3, 4), np.nan)
    for u, unit in enumerate(units):
        for r, v in enumerate(unit):
            data[r, u] = codes[v]
    assert abs(krippendorff_alpha(units) - krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")) < 1e-9


def test_alpha_is_undefined_without_variation_or_pairs():
    assert np.isnan(krippendorff_alpha([[3, 3], [3, 3]], "ordinal"))
    assert np.isnan(krippendorff_alpha([[1], [2], [3]], "ordinal"))


def test_fleiss_kappa_reproduces_fleiss_1971s_example():
    # 10 subjects, 14 raters, 5 categories: P̄ = 0.378, P̄_e = 0.213, κ = 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    units = [[j for j in range(5) for _ in range(row[j])] for row in table]
    assert fleiss_kappa(units) == pytest.approx(0.20993, abs=1e-5)


def test_fleiss_kappa_is_one_for_perfect_agreement_and_about_zero_for_chance():
    assert fleiss_kappa([["a"] * 3, ["b"] * 3, ["a"] * 3]) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    assert abs(fleiss_kappa([list(rng.integers(0, 3, 4)) for _ in range(3000)])) < 0.03


def test_rater_agreement_and_outliers_find_the_random_rater():
    rng = np.random.default_rng(4)
    answers = {}
    for unit in range(60):
        truth = int(rng.integers(1, 6))
        answers[unit] = {f"r{k}": truth for k in range(4)}
        answers[unit]["noisy"] = int(rng.integers(1, 6))
    agreement = rater_agreement(answers, "nominal")
    assert agreement["r0"]["agreement"] > 0.7 and agreement["noisy"]["agreement"] < 0.4
    flagged = outliers({r: a["agreement"] for r, a in agreement.items()}, {"r1": 0.2, "r2": 0.9})
    assert set(flagged) == {"noisy", "r1"}
    assert "gold accuracy 20%" in flagged["r1"][0]
