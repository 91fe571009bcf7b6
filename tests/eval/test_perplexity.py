"""Perplexity: the notes' worked example, window layout, and equality with transformers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tokenloom as tl
from tokenloom.errors import InvalidArgument
from tokenloom.eval.perplexity import perplexity, perplexity_from_logprobs, perplexity_from_probs
from tokenloom.eval.scoring import plan_windows


def test_perplexity_from_probs_matches_the_worked_example():
    assert perplexity_from_probs([0.9, 0.8, 0.6, 0.4, 0.3, 0.2]) == pytest.approx(2.1415, abs=1e-4)


@pytest.mark.parametrize(
    "logprobs, expected",
    [([0.0, 0.0], 1.0), ([math.log(0.5)] * 3, 2.0), ([math.log(0.5), math.log(0.25)], math.sqrt(8))],
)
def test_perplexity_from_logprobs_is_exp_of_mean_nll(logprobs, expected):
    assert perplexity_from_logprobs(logprobs) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [[], [0.5, 0.0], [1.2], [-0.1]])
def test_perplexity_from_probs_rejects_non_probabilities(bad):
    with pytest.raises(InvalidArgument):
        perplexity_from_probs(bad)


def test_plan_windows_table():
    got = [(w.begin, w.end, w.first) for w in plan_windows(10, 4, 2)]
    assert got == [(0, 4, 1), (2, 6, 5), (4, 8, 7), (5, 9, 9)]
    disjoint = [(w.begin, w.end, w.first) for w in plan_windows(9, 4, 4)]
    assert disjoint == [(0, 4, 1), (4, 8, 5)]


@given(st.integers(2, 300), st.integers(2, 64), st.data())
def test_every_token_but_the_first_is_scored_once_with_enough_context(n, context, data):
    stride = data.draw(st.integers(1, context))
    scored = []
    for w in plan_windows(n, context, stride):
        assert 0 <= w.begin < w.first <= w.end < n and w.end - w.begin <= context
        targets = list(range(w.first, w.end + 1))
        scored += targets
        if w.first > 1:  # after the first window every target sees >= context - stride tokens
            assert all(t - w.begin >= min(context - stride + 1, t) for t in targets)
    assert scored == list(range(1, n))


def _hf_same_windows(hf_model, ids: torch.Tensor, context: int, stride: int) -> tuple[float, int]:
    total, count = 0.0, 0
    with torch.inference_mode():
        for w in plan_windows(len(ids), context, stride):
            logp = hf_model(ids[None, w.begin : w.end]).logits[0].float().log_softmax(-1)
            targets = torch.arange(w.first, w.end + 1)
            total -= float(logp[targets - 1 - w.begin, ids[targets]].double().sum())
            count += len(targets)
    return total, count


@pytest.mark.slow
def test_equals_transformers_on_the_same_windows(smollm, hf_smollm, wiki_text):
    text = wiki_text[:3600]  # about 830 tokens: 5 windows of 256
    ours = perplexity(smollm, text, context=256, stride=128, batch_size=2)
    ids = torch.tensor(smollm.tokenizer.encode(text))
    total, count = _hf_same_windows(hf_smollm, ids, 256, 128)
    assert ours.tokens == count == len(ids) - 1 and len(ids) > 700
    assert ours.perplexity == pytest.approx(math.exp(total / count), rel=1e-3)
    assert ours.nll == pytest.approx(total / count, rel=1e-4)  # in practice ~1e-6


def test_batch_size_does_not_change_the_result(smollm, wiki_text):
    text = wiki_text[:800]
    one = perplexity(smollm, text, context=64, stride=32, batch_size=1)
    three = perplexity(smollm, text, context=64, stride=32, batch_size=3)
    assert one.tokens == three.tokens > 150
    assert three.perplexity == pytest.approx(one.perplexity, rel=1e-6)


def test_statistics_are_summed_over_texts_and_bos_scores_every_token(smollm, tmp_path):
    a, b = "The cat sat on the mat and looked at the door.", "Rain fell all day over the quiet harbour town."
    path = tmp_path / "b.txt"
    path.write_text(b, encoding="utf-8")
    ra, rb, both = perplexity(smollm, a), perplexity(smollm, path), perplexity(smollm, [a, path])
    assert both.tokens == ra.tokens + rb.tokens
    assert both.nll * both.tokens == pytest.approx(ra.nll * ra.tokens + rb.nll * rb.tokens)
    assert both.bytes == len(a) + len(b) and both.words == 11 + 9
    assert both.bits_per_byte == pytest.approx(both.nll * both.tokens / (both.bytes * math.log(2)))
    with_bos = perplexity(smollm, a, bos=True)
    assert with_bos.tokens == ra.tokens + 1 == len(smollm.tokenizer.encode(a))
    assert "bos:endoftext" in with_bos.signature and "bos:no" in ra.signature


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("", {}, "empty"),
        ("   \n", {}, "empty"),
        ("x", {}, "at least 2"),
        ("Some text to score here.", {"context": 9000}, "context"),
        ("Some text to score here.", {"context": 64, "stride": 65}, "stride"),
        ("Some text to score here.", {"stride": 0}, "stride"),
        ("Some text to score here.", {"batch_size": 0}, "batch_size"),
        ([], {}, "no text"),
        (Path("/no/such/file.txt"), {}, "not a file"),
    ],
)
def test_bad_input_says_what_is_allowed(smollm, text, options, message):
    with pytest.raises(InvalidArgument, match=message):
        perplexity(smollm, text, **options)


def test_public_api_is_reexported():
    assert tl.eval.perplexity is perplexity
    assert tl.eval.perplexity_from_probs is perplexity_from_probs
    for name in ("perplexity_from_logprobs", "classify", "multiple_choice", "fill_blank"):
        assert callable(getattr(tl.eval, name))
