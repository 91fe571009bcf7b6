"""The semantic repetition guard: sentence splitting, rollbacks on the real model, streaming, validation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("sentence_transformers", reason="the optional extra tokenloom[rag] is not installed")

import tokenloom as tl  # noqa: E402
from tokenloom.embed import default_embedder  # noqa: E402
from tokenloom.errors import InvalidArgument  # noqa: E402
from tokenloom.generation.semantic import (  # noqa: E402
    SemanticGuard, ban_first_tokens, next_sentence, split_sentences,
)

# SmolLM2-135M greedy on this prompt says " I'm a cat person." over and over.
LOOP = "I like cats. I like dogs."
GREEDY = dict(temperature=0, max_tokens=60)


@pytest.fixture(scope="module")
def lm(smollm_native):
    return smollm_native  # tokenloom.load("smollm2-135m-instruct"), loaded once per test run


@pytest.fixture(scope="module")
def plain(lm):
    """The greedy loop without the guard."""
    return lm.generate(LOOP, **GREEDY)


def kept_sentences(lm, completion) -> list[str]:
    """The sentences the guard checked: those that had ended before the last (finishing) token."""
    return split_sentences(lm.tokenizer.decode(completion.token_ids[:-1], skip_special_tokens=True))


def too_close(sentences: list[str], threshold: float) -> int:
    """How many sentences reach `threshold` with an earlier one (each embedded alone, as the guard does)."""
    vectors = torch.cat([default_embedder().encode([s]) for s in sentences])
    return sum(float((vectors[:i] @ vectors[i]).max()) >= threshold for i in range(1, len(sentences)))


# -- sentence rule ------------------------------------------------------------------
@pytest.mark.parametrize("text, sentences", [
    ("The cat sat. The dog ran! Did it? Yes it did.\n", ["The cat sat.", "The dog ran!", "Did it?", "Yes it did."]),
    ('He said "go home." Then he left.) Fine', ['He said "go home."', "Then he left.)"]),
    ("Pi is 3.14 or so. Wait... what is it?\n\nNo idea", ["Pi is 3.14 or so.", "Wait... what is it?"]),
    ("1. Apples are red.\n2. Pears are green.\n", ["1. Apples are red.", "2. Pears are green."]),
    ("A title line\nand a body line\n", ["A title line", "and a body line"]),
    ("Yes. No. Maybe so.", ["Yes. No."]),  # one word is not a sentence; the tail has no whitespace after it
    ("No end yet.", []),
    ("", []),
])
def test_split_sentences_follows_the_documented_rule(text, sentences):
    assert split_sentences(text) == sentences


def test_a_sentence_end_is_seen_only_once_whitespace_follows_the_punctuation():
    assert next_sentence("It ended.") is None
    assert next_sentence("It ended. ") == (9, "It ended.")
    assert next_sentence("It ended.\n") == (9, "It ended.")
    assert next_sentence("\n\nIt ended. ") == (1, "")  # a blank line: an empty sentence
    assert next_sentence("So it is. And so", 9) is None


def test_rejected_first_tokens_are_banned_at_the_sentence_start_only():
    guard = SemanticGuard(0.5, 3, SimpleNamespace(dimension=4), mark=None)
    guard.start, guard.banned = 2, [1, 3]
    seqs = [SimpleNamespace(guard=guard, ids=[7, 8]), SimpleNamespace(guard=None, ids=[7, 8]),
            SimpleNamespace(guard=guard, ids=[7, 8, 9])]
    logits = torch.zeros(3, 5)
    banned = ban_first_tokens(logits, seqs)
    assert torch.isinf(banned[0, [1, 3]]).all() and torch.isfinite(banned[0, [0, 2, 4]]).all()
    assert torch.isfinite(banned[1:]).all() and torch.isfinite(logits).all()  # a copy; other rows untouched
    assert ban_first_tokens(logits, seqs[1:]) is logits


# -- validation -----------------------------------------------------------------------
@pytest.mark.parametrize("fields, message", [
    (dict(semantic_repetition_threshold=0), r"semantic_repetition_threshold must be in \(0, 1\], got 0"),
    (dict(semantic_repetition_threshold=1.5), r"semantic_repetition_threshold must be in \(0, 1\], got 1.5"),
    (dict(semantic_repetition_threshold="high"), r"semantic_repetition_threshold must be a number in \(0, 1\]"),
    (dict(semantic_max_retries=-1), r"semantic_max_retries must be in \[0, ∞\), got -1"),
    (dict(semantic_max_retries=True), r"semantic_max_retries must be an integer"),
])
def test_invalid_guard_fields_are_refused_with_field_value_and_range(fields, message):
    with pytest.raises(InvalidArgument, match=message):
        tl.SamplingParams(**fields)


def test_the_guard_is_off_by_default_and_takes_the_whole_range():
    assert tl.SamplingParams().semantic_repetition_threshold is None
    assert tl.SamplingParams(semantic_repetition_threshold=1, semantic_max_retries=0).semantic_repetition_threshold == 1.0


# -- on the real model ------------------------------------------------------------------
def test_a_guard_that_never_fires_changes_no_token(lm):
    """The guard's bookkeeping (sentence marks, text held back a sentence) leaves sampling alone: with a
    threshold no sentence reaches, greedy and seeded outputs are the tokens of the guard turned off."""
    for prompt, params in (("The history of the city", dict(temperature=0)), (LOOP, dict(temperature=0.8, seed=3))):
        off = lm.generate(prompt, max_tokens=40, semantic_repetition_threshold=None, **params)
        armed = lm.generate(prompt, max_tokens=40, semantic_repetition_threshold=1.0, **params)
        assert armed.semantic_rollbacks == off.semantic_rollbacks == 0
        assert armed.token_ids == off.token_ids and len(off.token_ids) >= 10


def test_greedy_loop_fires_the_guard_and_keeps_no_repeat_it_had_retries_for(lm, plain):
    assert too_close(split_sentences(plain.text), 0.8) >= 5  # the loop the guard is for
    guarded = lm.generate(LOOP, **GREEDY, semantic_repetition_threshold=0.8, semantic_max_retries=3)
    assert guarded.semantic_rollbacks > 0
    sentences = kept_sentences(lm, guarded)
    # A sentence that close to an earlier one is kept only after 3 rollbacks of it; no sentence
    # (the unterminated tail included, the first one excepted) is rolled back more than 3 times.
    assert 3 * too_close(sentences, 0.8) <= guarded.semantic_rollbacks <= 3 * len(sentences)
    assert guarded.completion_tokens == len(guarded.token_ids) and guarded.text == lm.tokenizer.decode(guarded.token_ids)


def test_retries_are_bounded_per_sentence(lm):
    # At 0.01 every sentence after the first is too close to an earlier one: each is rolled back
    # exactly max_retries times and then kept; the unterminated tail may have used up to 2 more.
    # ignore_eos: a resampled sentence may end the text, and this needs several to count.
    c = lm.generate(LOOP, **GREEDY, ignore_eos=True, semantic_repetition_threshold=0.01, semantic_max_retries=2)
    sentences = kept_sentences(lm, c)
    assert len(sentences) >= 3
    assert too_close(sentences, 0.01) == len(sentences) - 1
    assert 2 * (len(sentences) - 1) <= c.semantic_rollbacks <= 2 * len(sentences)


def test_no_retries_checks_but_never_changes_the_tokens(lm, plain):
    checked = lm.generate(LOOP, **GREEDY, semantic_repetition_threshold=0.5, semantic_max_retries=0)
    assert checked.token_ids == plain.token_ids and checked.text == plain.text
    assert checked.semantic_rollbacks == 0


def test_streamed_steps_carry_exactly_the_kept_tokens_and_text(lm):
    params = tl.SamplingParams(**GREEDY, semantic_repetition_threshold=0.8)
    steps = list(lm.scheduler.submit(lm.encode_prompt(LOOP), params))
    done = steps[-1].finished
    assert done.semantic_rollbacks > 0 and all(s.finished is None for s in steps[:-1])
    assert "".join(s.text for s in steps) == done.text
    assert [s.token_id for s in steps if s.token_id not in lm.tokenizer.eos_ids] == done.token_ids
    assert "".join(lm.stream(LOOP, params)) == done.text


def test_a_seeded_guarded_request_is_reproducible_and_batch_invariant(lm):
    # the first seed whose sample the guard rolls back (which one depends on the CPU's kernels)
    for seed in range(12):
        seeded = tl.SamplingParams(temperature=0.5, seed=seed, max_tokens=48, semantic_repetition_threshold=0.7)
        alone = lm.generate(LOOP, seeded)
        if alone.semantic_rollbacks > 0:
            break
    assert alone.semantic_rollbacks > 0, "no seed in 0..11 made the guard fire"
    assert lm.generate(LOOP, seeded).token_ids == alone.token_ids
    neighbours = [("The history of the city", tl.SamplingParams(**GREEDY, semantic_repetition_threshold=0.5)),
                  (LOOP, seeded),
                  ("Once upon a time", tl.SamplingParams(temperature=1.0, max_tokens=40, ignore_eos=True))]
    beside = lm.generate_batch(neighbours)[1]
    assert beside.token_ids == alone.token_ids and beside.text == alone.text
    assert beside.semantic_rollbacks == alone.semantic_rollbacks
