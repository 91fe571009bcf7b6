"""The bit-parallel LCS against rouge-score's dynamic-programming table and backtrack."""

from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from tokenloom.metrics import lcs_indices, lcs_length

sequences = st.lists(st.sampled_from("abcd"), max_size=14)


@settings(max_examples=300, deadline=None)
@given(ref=sequences, can=sequences)
def test_lcs_length_equals_the_dynamic_programming_table(ref, can):
    assert lcs_length(ref, can) == rouge_scorer._lcs_table(ref, can)[-1][-1]


@settings(max_examples=300, deadline=None)
@given(ref=sequences, can=sequences)
def test_lcs_indices_pick_the_same_subsequence_as_rouge_score_on_ties(ref, can):
    assert lcs_indices(ref, can) == rouge_scorer.lcs_ind(ref, can)


@settings(max_examples=300, deadline=None)
@given(ref=st.lists(st.sampled_from("abcdefgh"), max_size=20), can=sequences)
def test_lcs_indices_with_reference_tokens_missing_from_the_candidate(ref, can):
    # rows of absent tokens are skipped by the walk; the pick must not change
    assert lcs_indices(ref, can) == rouge_scorer.lcs_ind(ref, can)


def test_textbook_example():
    assert lcs_length("ABCBDAB", "BDCABA") == 4
    assert lcs_indices("ABCBDAB", "BDCABA") == [1, 2, 3, 5]


def test_long_sequences_beyond_one_machine_word():
    ref = ["w%d" % (i % 97) for i in range(300)]
    can = ["w%d" % (i % 89) for i in range(280)]
    assert lcs_length(ref, can) == rouge_scorer._lcs_table(ref, can)[-1][-1]
