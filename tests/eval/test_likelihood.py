"""Continuation log-likelihoods with a shared prefilled prompt; multiple choice."""

from __future__ import annotations

import pytest

from tokenloom.errors import InvalidArgument
from tokenloom.eval.likelihood import (
    continuation_logprobs,
    multiple_choice,
    multiple_choice_accuracy,
    split_whitespace,
)


def _separately(lm, prompt: list[int], cont: list[int]) -> float:
    logp = lm.logits(prompt + cont).log_softmax(-1)
    return sum(float(logp[len(prompt) - 1 + k, token]) for k, token in enumerate(cont))


def test_shared_prefix_kv_reuse_equals_scoring_each_label_separately(smollm):
    tok = smollm.tokenizer
    long_review = "Review: a gem of a film, with a cast that never puts a foot wrong and a score I still hum"
    prompts = [tok.encode(long_review + "\nSentiment:"), tok.encode("Review: dull\nSentiment:")]
    labels = [tok.encode(" negative"), tok.encode(" positive"), tok.encode(" mixed")]
    hits = smollm.scheduler.prefix.hits
    scores = continuation_logprobs(smollm, prompts, labels)
    assert len(scores) == 6
    assert smollm.scheduler.prefix.hits >= hits + 2  # the long prompt was computed once for its three labels
    for b, prompt in enumerate(prompts):
        for j, label in enumerate(labels):
            assert len(scores[b * 3 + j]) == len(label)
            assert float(scores[b * 3 + j].sum()) == pytest.approx(_separately(smollm, prompt, label), abs=2e-4)


def test_split_whitespace_moves_trailing_spaces_to_the_continuation():
    assert split_whitespace("Answer: ", "yes") == ("Answer:", " yes")
    assert split_whitespace("Answer:", " yes") == ("Answer:", " yes")


def test_multiple_choice_reports_raw_and_length_normalised_choice(smollm):
    result = multiple_choice(smollm, "Question: What is the capital of France?\nAnswer:", ["Paris", "Berlin", "a potato"])
    assert result.best == 0 and result.best_norm == 0
    assert result.logliks_norm[2] == pytest.approx(result.logliks[2] / len("a potato"))
    assert multiple_choice_accuracy([result, result], [0, 1]) == {"acc": 0.5, "acc_norm": 0.5}


def test_choices_that_tokenize_to_nothing_are_refused(smollm):
    with pytest.raises(InvalidArgument, match="at least 2"):
        multiple_choice(smollm, "Q?", ["only one"])
    with pytest.raises(InvalidArgument, match="tokenizes to nothing"):
        multiple_choice(smollm, "Q?", ["yes", ""], delimiter="")
