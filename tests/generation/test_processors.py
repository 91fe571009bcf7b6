"""Each processor against its transformers counterpart, on random logits (ties included)."""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from transformers.generation import logits_process as hf

from tokenloom.errors import InvalidArgument
from tokenloom.generation.columns import nucleus_probe
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.processors import (
    FrequencyPenalty, LogitBias, MinP, MinTokens, NoRepeatNGram, PresencePenalty, RepetitionPenalty,
    Temperature, TopK, TopP, Typical, banned_ngram_tokens,
)

FAST = settings(max_examples=60, deadline=None)
TIED_VALUES = [-3.0, -1.0, 0.0, 0.5, 2.0]


@st.composite
def logit_batches(draw, max_vocab: int = 24) -> torch.Tensor:
    """(B, V) float32 logits; half the time drawn from five values, so ties are common."""
    batch, vocab = draw(st.integers(1, 3)), draw(st.integers(2, max_vocab))
    element = st.sampled_from(TIED_VALUES) if draw(st.booleans()) else st.floats(-8, 8, width=32)
    values = draw(st.lists(element, min_size=batch * vocab, max_size=batch * vocab))
    return torch.tensor(values, dtype=torch.float32).reshape(batch, vocab)


def empty_history(logits: torch.Tensor) -> TokenHistory:
    return TokenHistory([[] for _ in range(logits.shape[0])], logits.shape[1])


def dummy_ids(logits: torch.Tensor) -> torch.Tensor:
    return torch.zeros(logits.shape[0], 1, dtype=torch.long)


def assert_same_up_to_boundary_ties(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Same surviving values (as a multiset) and, where both keep a token, the same value.

    Two filters that differ only in *which* of several equal-valued tokens fills the last
    places pass; anything else fails.
    """
    for row_ours, row_theirs in zip(ours, theirs):
        kept_ours, kept_theirs = row_ours > -math.inf, row_theirs > -math.inf
        assert torch.equal(row_ours[kept_ours].sort().values, row_theirs[kept_theirs].sort().values)
        both = kept_ours & kept_theirs
        assert torch.equal(row_ours[both], row_theirs[both])


def reference_top_k_lowest_id(row: list[float], k: int) -> set[int]:
    return set(sorted(range(len(row)), key=lambda i: (-row[i], i))[:k])


# -- truncation filters -------------------------------------------------------------------

@FAST
@given(logits=logit_batches(), k=st.integers(1, 30))
def test_top_k_with_ties_all_equals_hf_top_k(logits, k):
    ours = TopK(k, ties="all")(empty_history(logits), logits)
    assert torch.equal(ours, hf.TopKLogitsWarper(k)(dummy_ids(logits), logits))


@FAST
@given(logits=logit_batches(), k=st.integers(1, 30))
def test_top_k_lowest_id_keeps_exactly_k_tokens_and_lowest_ids_win_ties(logits, k):
    ours = TopK(k, ties="lowest_id")(empty_history(logits), logits)
    for row_in, row_out in zip(logits.tolist(), ours):
        kept = set(torch.nonzero(row_out > -math.inf).flatten().tolist())
        assert kept == reference_top_k_lowest_id(row_in, k)
        assert all(row_out[i] == row_in[i] for i in kept)


@FAST
@given(logits=logit_batches(), k=st.integers(1, 30))
def test_top_k_lowest_id_equals_hf_when_the_kth_value_is_not_tied(logits, k):
    k_eff = min(k, logits.shape[1])
    kth = logits.sort(dim=-1, descending=True).values[:, k_eff - 1:k_eff]
    assume(bool(((logits == kth).sum(-1) == 1).all()))
    ours = TopK(k, ties="lowest_id")(empty_history(logits), logits)
    assert torch.equal(ours, hf.TopKLogitsWarper(k)(dummy_ids(logits), logits))


def test_top_k_tie_rules_on_a_worked_example():
    logits = torch.tensor([[3.0, 1.0, 3.0, 3.0]])
    assert TopK(2, "lowest_id")(empty_history(logits), logits).isfinite().tolist() == [[True, False, True, False]]
    assert TopK(2, "all")(empty_history(logits), logits).isfinite().tolist() == [[True, False, True, True]]


@FAST
@given(logits=logit_batches(), p=st.one_of(st.floats(0.01, 1.0), st.sampled_from([0.25, 0.5, 0.75, 1.0])))
def test_top_p_matches_hf_up_to_which_tied_token_fills_the_boundary(logits, p):
    ours = TopP(p)(empty_history(logits), logits)
    assert_same_up_to_boundary_ties(ours, hf.TopPLogitsWarper(p)(dummy_ids(logits), logits))


def test_top_p_keeps_the_token_that_crosses_p():
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    kept = TopP(0.7)(empty_history(logits), logits).isfinite()
    assert kept.tolist() == [[True, True, False]]


def test_top_p_always_keeps_the_most_likely_token():
    logits = torch.tensor([[5.0, 0.0, 0.0]])
    assert TopP(0.01)(empty_history(logits), logits).isfinite().tolist() == [[True, False, False]]


def test_top_p_one_keeps_everything_even_tokens_of_negligible_probability():
    logits = torch.tensor([[0.0, -200.0, -1e4, 3.0]])
    assert torch.equal(TopP(1.0)(empty_history(logits), logits), logits)


def test_top_p_breaks_boundary_ties_by_lowest_id():
    logits = torch.zeros(1, 4)
    assert TopP(0.5)(empty_history(logits), logits).isfinite().tolist() == [[True, True, False, False]]


def test_top_p_on_a_large_tied_vocabulary_matches_hf_up_to_boundary_ties():
    generator = torch.Generator().manual_seed(0)
    values = torch.tensor(TIED_VALUES)
    logits = values[torch.randint(0, len(values), (4, 300), generator=generator)]  # (4, 300)
    for p in (0.1, 0.5, 0.9):
        ours = TopP(p)(empty_history(logits), logits)
        assert_same_up_to_boundary_ties(ours, hf.TopPLogitsWarper(p)(dummy_ids(logits), logits))


def test_top_p_after_top_k_on_a_full_vocabulary_gives_the_full_sort_result():
    logits = torch.randn(3, 49152, generator=torch.Generator().manual_seed(1)) * 3  # (3, V)
    after_k = TopK(40)(empty_history(logits), logits)  # few finite: the candidate shortcut
    ours = TopP(0.8)(empty_history(after_k), after_k)
    assert_same_up_to_boundary_ties(ours, hf.TopPLogitsWarper(0.8)(dummy_ids(after_k), after_k))
    assert 1 <= int(ours.isfinite().sum(-1).min()) and int(ours.isfinite().sum(-1).max()) <= 40


@pytest.mark.parametrize("scale,p,probed", [(4.0, 0.9, 1024), (2.5, 0.9, 8192), (0.1, 0.5, None)])
def test_top_p_on_a_full_vocabulary_matches_hf_with_or_without_the_partial_sort(scale, p, probed):
    """A peaked row is decided by its best 1024 tokens, a flatter one by its best 8192 (the best
    1023 hold 0.69 of the mass at scale 2.5, the best 8191 0.94), a flat one by the full sort."""
    logits = torch.randn(2, 49152, generator=torch.Generator().manual_seed(3)) * scale  # (2, V)
    probe = nucleus_probe(logits.double().softmax(-1), p)
    assert (None if probe is None else probe[2].shape[-1]) == probed
    ours = TopP(p)(empty_history(logits), logits)
    assert_same_up_to_boundary_ties(ours, hf.TopPLogitsWarper(p)(dummy_ids(logits), logits))


@FAST
@given(logits=logit_batches(), p=st.floats(0.0, 1.0))
def test_min_p_equals_hf_min_p(logits, p):
    ours = MinP(p)(empty_history(logits), logits)
    assert torch.equal(ours, hf.MinPLogitsWarper(p)(dummy_ids(logits), logits))


@FAST
@given(logits=logit_batches(), p=st.floats(0.01, 0.99))
def test_typical_with_ties_all_equals_hf_typical(logits, p):
    ours = Typical(p, ties="all")(empty_history(logits), logits)
    assert torch.equal(ours, hf.TypicalLogitsWarper(p)(dummy_ids(logits), logits))


@FAST
@given(logits=logit_batches(), p=st.floats(0.01, 0.99))
def test_typical_lowest_id_keeps_a_subset_of_hf_with_the_same_mass_test(logits, p):
    ours = Typical(p, ties="lowest_id")(empty_history(logits), logits).isfinite()
    theirs = hf.TypicalLogitsWarper(p)(dummy_ids(logits), logits).isfinite()
    assert bool((ours <= theirs).all()) and bool(ours.any(-1).all())
    kept_mass = (logits.softmax(-1) * ours).sum(-1)
    assert bool(((kept_mass >= p - 1e-6) | (ours.sum(-1) == ours.shape[-1])).all())


def test_typical_can_drop_the_most_likely_token():
    logits = torch.tensor([[4.0] + [2.0] * 30])
    kept = Typical(0.5)(empty_history(logits), logits).isfinite()
    assert not bool(kept[0, 0]) and int(kept.sum()) >= 1


def test_typical_one_keeps_everything():
    logits = torch.tensor([[1.0, 2.0, -4.0]])
    assert torch.equal(Typical(1.0)(empty_history(logits), logits), logits)


# -- temperature and penalties ----------------------------------------------------------------

@FAST
@given(logits=logit_batches(), temperature=st.floats(0.05, 5.0))
def test_temperature_equals_hf_temperature(logits, temperature):
    ours = Temperature(temperature)(empty_history(logits), logits)
    assert torch.equal(ours, hf.TemperatureLogitsWarper(temperature)(dummy_ids(logits), logits))


def test_temperature_table_for_logits_10_5_1():
    logits = torch.tensor([[10.0, 5.0, 1.0]])
    probs = Temperature(2.0)(empty_history(logits), logits).softmax(-1)
    assert torch.allclose(probs, torch.tensor([[0.9148, 0.0751, 0.0102]]), atol=1e-4)
    assert torch.allclose(logits.softmax(-1), torch.tensor([[0.9932, 0.0067, 0.0001]]), atol=1e-4)


@st.composite
def histories(draw, vocab: int = 12):
    """(prompts, outputs, logits) for rows of equal prompt length and equal output length."""
    batch, prompt_len, output_len = draw(st.integers(1, 3)), draw(st.integers(0, 8)), draw(st.integers(0, 8))
    assume(prompt_len + output_len > 0)
    token = st.integers(0, vocab - 1)
    prompts = [draw(st.lists(token, min_size=prompt_len, max_size=prompt_len)) for _ in range(batch)]
    outputs = [draw(st.lists(token, min_size=output_len, max_size=output_len)) for _ in range(batch)]
    element = st.sampled_from(TIED_VALUES) if draw(st.booleans()) else st.floats(-8, 8, width=32)
    values = draw(st.lists(element, min_size=batch * vocab, max_size=batch * vocab))
    return prompts, outputs, torch.tensor(values, dtype=torch.float32).reshape(batch, vocab)


def build_history(prompts, outputs, vocab: int) -> TokenHistory:
    history = TokenHistory(prompts, vocab)
    for step in range(len(outputs[0])):
        history.append(torch.tensor([row[step] for row in outputs]))
    return history


def full_ids(prompts, outputs) -> torch.Tensor:
    return torch.tensor([p + o for p, o in zip(prompts, outputs)], dtype=torch.long)


@FAST
@given(case=histories(), penalty=st.floats(0.2, 3.0))
def test_repetition_penalty_equals_hf_over_prompt_and_output(case, penalty):
    prompts, outputs, logits = case
    ours = RepetitionPenalty(penalty)(build_history(prompts, outputs, logits.shape[1]), logits)
    theirs = hf.RepetitionPenaltyLogitsProcessor(penalty)(full_ids(prompts, outputs), logits.clone())
    assert torch.equal(ours, theirs)


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    history = TokenHistory([[0, 1]], 3)
    out = RepetitionPenalty(2.0)(history, torch.tensor([[4.0, -1.0, 4.0]]))
    assert out.tolist() == [[2.0, -2.0, 4.0]]


@FAST
@given(case=histories(), n=st.integers(1, 4))
def test_no_repeat_ngram_equals_hf_over_prompt_and_output(case, n):
    prompts, outputs, logits = case
    ours = NoRepeatNGram(n)(build_history(prompts, outputs, logits.shape[1]), logits)
    theirs = hf.NoRepeatNGramLogitsProcessor(n)(full_ids(prompts, outputs), logits)
    assert torch.equal(ours, theirs)


def test_banned_ngram_tokens_worked_example():
    assert banned_ngram_tokens([5, 6, 7, 5, 6], 3).tolist() == [7]
    assert banned_ngram_tokens([5, 6], 3).tolist() == []


@FAST
@given(case=histories(), presence=st.floats(-2, 2), frequency=st.floats(-2, 2))
def test_presence_and_frequency_penalties_follow_the_openai_formula_over_output_only(case, presence, frequency):
    prompts, outputs, logits = case
    history = build_history(prompts, outputs, logits.shape[1])
    scores = FrequencyPenalty(frequency)(history, PresencePenalty(presence)(history, logits))
    for row, out in enumerate(outputs):
        for token in range(logits.shape[1]):
            count = out.count(token)
            expected = logits[row, token].item() - presence * (count > 0) - frequency * count
            assert scores[row, token].item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("generated", [0, 1, 2, 3])
def test_min_tokens_equals_hf_min_new_tokens(generated):
    prompts, outputs = [[4, 5, 6]], [[7] * generated]
    logits = torch.randn(1, 10, generator=torch.Generator().manual_seed(generated))
    ours = MinTokens(2, [0, 3], 10)(build_history(prompts, outputs, 10), logits)
    theirs = hf.MinNewTokensLengthLogitsProcessor(3, 2, [0, 3])(full_ids(prompts, outputs), logits)
    assert torch.equal(ours, theirs)


def test_min_tokens_bans_rows_independently_by_their_own_output_length():
    history = TokenHistory([[1], [1]], 5)
    history.output_ids = [[2], [2, 2, 2]]
    out = MinTokens(2, [0], 5)(history, torch.zeros(2, 5))
    assert out[:, 0].tolist() == [-math.inf, 0.0]


def test_logit_bias_equals_hf_single_token_sequence_bias():
    logits = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    ours = LogitBias({3: 2.5, 1: -100.0}, 8)(empty_history(logits), logits)
    theirs = hf.SequenceBiasLogitsProcessor([[[3], 2.5], [[1], -100.0]])(dummy_ids(logits), logits)
    assert torch.equal(ours, theirs)


def test_processors_never_modify_their_input():
    logits = torch.randn(2, 30, generator=torch.Generator().manual_seed(0))
    before = logits.clone()
    history = TokenHistory([[1, 2, 1], [3, 3, 4]], 30)
    for proc in (TopK(3), TopP(0.5), MinP(0.2), Typical(0.5), Temperature(0.5), RepetitionPenalty(1.3),
                 NoRepeatNGram(2), PresencePenalty(1.0), FrequencyPenalty(1.0), LogitBias({0: 1.0}, 30),
                 MinTokens(1, [0], 30)):
        proc(history, logits)
        assert torch.equal(logits, before), proc


# -- explain and validation ---------------------------------------------------------------------

def test_explain_reports_kept_tokens_mass_and_top_candidates():
    logits = torch.tensor([3.0, 1.0, 2.0, 0.0])
    step = TopK(2).explain(TokenHistory([[]], 4), logits, top=3)
    probs = logits.softmax(-1)
    assert (step.name, step.kept, step.removed) == ("top_k", 2, 2)
    assert step.mass_kept == pytest.approx(float(probs[0] + probs[2]))
    assert [t for t, _ in step.top_before] == [0, 2, 1]
    assert [t for t, _ in step.top_after] == [0, 2] and sum(p for _, p in step.top_after) == pytest.approx(1.0)
    assert [t for t, _ in step.top_removed] == [1, 3]


BAD_PROCESSORS = [
    (lambda: TopK(0), "top_k must be in [1, ∞)"),
    (lambda: TopK(3, ties="random"), "ties must be one of lowest_id, all"),
    (lambda: TopP(0.0), "top_p must be in (0, 1]"),
    (lambda: MinP(1.5), "min_p must be in [0, 1]"),
    (lambda: Typical(0.0), "typical_p must be in (0, 1]"),
    (lambda: Temperature(0.0), "temperature must be in (0, ∞)"),
    (lambda: RepetitionPenalty(0.0), "repetition_penalty must be in (0, ∞)"),
    (lambda: PresencePenalty(float("inf")), "presence_penalty must be in (-∞, ∞)"),
    (lambda: NoRepeatNGram(0), "no_repeat_ngram_size must be in [1, ∞)"),
    (lambda: MinTokens(2, [], 10), "min_tokens needs EOS or stop token ids in [0, 9]"),
    (lambda: MinTokens(2, [10], 10), "min_tokens needs EOS or stop token ids in [0, 9]"),
    (lambda: LogitBias({12: 1.0}, 10), "logit_bias token id must be in [0, 9], got 12"),
    (lambda: LogitBias({}, 10), "logit_bias must map at least one token id"),
]


@pytest.mark.parametrize("make,message", BAD_PROCESSORS, ids=[m for _, m in BAD_PROCESSORS])
def test_processor_arguments_are_validated_at_construction(make, message):
    with pytest.raises(InvalidArgument, match=None) as error:
        make()
    assert str(error.value).startswith(message)
