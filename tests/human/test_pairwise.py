"""Bradley–Terry equals choix's maximum-likelihood fit; Elo, win matrix and position bias."""

import numpy as np
import pytest

from tokenloom.human.pairwise import (
    Comparison,
    bradley_terry,
    bradley_terry_table,
    counts,
    elo,
    fit_bradley_terry,
    mle_exists,
    position_bias,
    win_matrix,
)

choix = pytest.importorskip("choix")


def _comparisons(seed: int, n: int = 5, m: int = 600, tie_rate: float = 0.2):
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, 1, n)
    found = []
    for k in range(m):
        i, j = rng.choice(n, 2, replace=False)
        p = 1 / (1 + np.exp(strength[j] - strength[i]))
        u = rng.random()
        score = 0.5 if u < tie_rate else (1.0 if rng.random() < p else 0.0)
        found.append(Comparison(int(i), int(j), score, k, bool(k % 2)))
    return found, strength


def _as_choix(found):
    """Ties as half a win: every judgement becomes two (winner, loser) pairs, a tie one each way."""
    data = []
    for c in found:
        if c.score == 0.5:
            data += [(c.i, c.j), (c.j, c.i)]
        else:
            data += [(c.i, c.j)] * 2 if c.score == 1 else [(c.j, c.i)] * 2
    return data


@pytest.mark.parametrize("seed", range(3))
def test_bradley_terry_equals_choix_maximum_likelihood(seed):
    found, _ = _comparisons(seed)
    theta, regularised = fit_bradley_terry(5, found)
    reference = choix.ilsr_pairwise(5, _as_choix(found), alpha=0.0, tol=1e-14, max_iter=10_000)
    assert not regularised
    assert np.abs(theta - (reference - reference.mean())).max() < 1e-9


def test_regularised_fit_equals_choix_with_the_same_prior():
    found, _ = _comparisons(7, m=80)
    wins, games = counts(5, found)
    # choix penalises α·Σθ² on the doubled data, i.e. twice our log-likelihood
    ours = bradley_terry(wins, games, alpha=0.25)
    reference = choix.opt_pairwise(5, _as_choix(found), alpha=0.5, tol=1e-12)
    assert np.abs(ours - reference).max() < 1e-6


def test_the_fit_recovers_the_strengths_that_generated_the_judgements():
    found, strength = _comparisons(1, m=4000, tie_rate=0.0)
    theta, _ = fit_bradley_terry(5, found)
    assert np.abs(theta - (strength - strength.mean())).max() < 0.2


def test_a_system_that_wins_everything_has_no_mle_and_gets_a_regularised_fit():
    found = [Comparison(0, 1, 1.0, k) for k in range(10)]
    assert not mle_exists(counts(2, found)[0])
    theta, regularised = fit_bradley_terry(2, found)
    assert regularised and theta[0] > theta[1] and np.isfinite(theta).all()


def test_table_intervals_order_and_differences():
    found, strength = _comparisons(2, m=1500)
    table = bradley_terry_table([f"s{k}" for k in range(5)], found, len(found), n_samples=200)
    order = [r["system"] for r in table["systems"]]
    assert order[0] == f"s{int(np.argmax(strength))}"
    assert all(r["theta_low"] <= r["theta"] <= r["theta_high"] for r in table["systems"])
    assert set(table["differences"]) == {f"s{a} - s{b}" for a in range(5) for b in range(a + 1, 5)}


def test_elo_moves_toward_the_winner_and_conserves_points():
    ratings = elo(["a", "b"], [Comparison(0, 1, 1.0)] * 20)
    assert ratings["a"] > 1000 > ratings["b"] and ratings["a"] + ratings["b"] == pytest.approx(2000)


def test_win_matrix_counts_each_judgement_from_both_sides():
    found = [Comparison(0, 1, 1.0), Comparison(1, 0, 1.0), Comparison(0, 1, 0.5), Comparison(0, 1, 1.0)]
    matrix = win_matrix(["a", "b"], found)
    assert matrix["a"]["b"] == {"win": 2, "tie": 1, "loss": 1}
    assert matrix["b"]["a"] == {"win": 1, "tie": 1, "loss": 2}


def test_position_bias_counts_left_wins_among_decisive_judgements():
    found = [Comparison(0, 1, 1.0, i_left=True)] * 30 + [Comparison(0, 1, 0.0, i_left=False)] * 30 + \
            [Comparison(0, 1, 0.5)] * 5
    bias = position_bias(found)
    assert (bias["left_wins"], bias["decisive"], bias["ties"]) == (60, 60, 5)
    assert bias["rate"] == 1.0 and bias["low"] > 0.9
