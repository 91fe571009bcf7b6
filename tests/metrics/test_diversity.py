"""Repetition and diversity measures: definitions pinned on small worked cases."""

import math

import pytest

from tokenloom.errors import InvalidArgument
from tokenloom.metrics import detect_loop, distinct_n, diversity_report, repetition_rate, self_bleu, zipf_coefficient


def test_distinct_n_counts_unique_ngrams_over_all_samples():
    assert distinct_n(["a b", "a c"], 1) == 3 / 4
    assert distinct_n(["a b a b"], 2) == 2 / 3
    assert distinct_n([[1, 2], [1, 2]], 2) == 1 / 2  # token ids work too
    assert distinct_n([""], 1) == 0.0


def test_repetition_rate_is_the_share_of_ngrams_repeating_an_earlier_one():
    assert repetition_rate("the cat the cat", 2) == pytest.approx(1 / 3)
    assert repetition_rate("a b c d", 1) == 0.0
    assert repetition_rate("a a a a", 1) == 0.75


def test_detect_loop_finds_the_period_and_full_repeats_of_a_stuck_continuation():
    assert detect_loop("so I said so I said so I".split()) == (3, 2)
    assert detect_loop("x a b a b a".split()) == (2, 2)
    assert detect_loop("once upon a time there was".split()) == (0, 0)


def test_detect_loop_prefers_the_shortest_period_on_ties():
    assert detect_loop(["a"] * 4) == (1, 4)


def test_detect_loop_respects_min_repeats():
    tokens = "x a b a b".split()
    assert detect_loop(tokens, min_repeats=2) == (2, 2)
    assert detect_loop(tokens, min_repeats=3) == (0, 0)
    with pytest.raises(InvalidArgument):
        detect_loop(tokens, min_repeats=1)


def test_zipf_coefficient_recovers_the_exponent_of_an_exact_power_law():
    tokens = [f"w{rank}" for rank in range(1, 9) for _ in range(int(round(1000 / rank**1.5)))]
    counts = [int(round(1000 / rank**1.5)) for rank in range(1, 9)]
    xs, ys = [math.log(r) for r in range(1, 9)], [math.log(c) for c in counts]
    mx, my = sum(xs) / 8, sum(ys) / 8
    expected = -sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    assert zipf_coefficient(tokens) == pytest.approx(expected)
    assert zipf_coefficient(tokens) == pytest.approx(1.5, abs=0.01)


def test_zipf_coefficient_needs_two_distinct_tokens():
    with pytest.raises(InvalidArgument):
        zipf_coefficient("a a a")


def test_self_bleu_is_100_for_identical_samples_and_lower_for_different_ones():
    same = ["the cat sat on the mat"] * 3
    assert self_bleu(same) == pytest.approx(100.0)
    varied = ["the cat sat on the mat", "a dog ran in the park", "the cat sat on a hat"]
    assert 0 < self_bleu(varied) < 100
    with pytest.raises(InvalidArgument):
        self_bleu(["only one"])


def test_diversity_report_has_the_keys_scripts_rely_on():
    report = diversity_report(["a b c a b c a b c", "d e f g"])
    assert {"distinct_1", "distinct_2", "repetition_rate", "self_bleu", "zipf_coefficient", "loops"} <= set(report)
    assert report["loops"] == 1
    assert report["distinct_1"] == pytest.approx(7 / 13)
