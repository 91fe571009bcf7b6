"""Log-likelihood of continuations: log P(c | prompt) = Σ_j log P(c_j | prompt, c_<j).

The building block of likelihood classification, multiple choice and
fill-in-the-blank. Every (prompt, continuation) pair is one scoring request to the
runtime (generation/scheduler.py): the same prefill as generation, and the same
prefix cache, so the prompt's keys and values are computed once and every further
continuation of it starts from them. With L labels a prompt costs one prefill plus
L short ones, not L full ones.

Tokenization: prompt and continuation are encoded separately and concatenated
(trailing whitespace of the prompt moves to the continuation, as
lm-evaluation-harness does), so "Sentiment:" + " positive" is scored as the ids
of "Sentiment:" followed by the ids of " positive".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenloom.errors import InvalidArgument


def split_whitespace(prompt: str, continuation: str) -> tuple[str, str]:
    """Move the prompt's trailing whitespace to the continuation.

    >>> split_whitespace("The capital is ", "Paris")
    ('The capital is', ' Paris')
    """
    stripped = prompt.rstrip()
    return stripped, prompt[len(stripped) :] + continuation


def continuation_logprobs(lm, prompts: list[list[int]], continuations: list[list[int]]) -> list[torch.Tensor]:
    """For each prompt b and continuation j: log P of every token of continuation j, a (n_j,) float64 tensor.

    Returns a flat list in the order (b, j), b-major. Row t of the logits of
    prompt + continuation[:-1] scores continuation[t].
    """
    jobs = [(list(p) + list(c[:-1]), len(c)) for p in prompts for c in continuations]
    logits = lm.scheduler.score_many(jobs)  # each (n_j, V)
    out = []
    for r, rows in enumerate(logits):
        cont = torch.tensor(continuations[r % len(continuations)], dtype=torch.long)
        logp = torch.log_softmax(rows, dim=-1)  # (n_j, V)
        out.append(logp[torch.arange(len(cont)), cont].double())
    return out


def encode_pairs(tokenizer, prompt: str, continuations: list[str]) -> tuple[list[int], list[list[int]]]:
    """Ids of a prompt (trailing whitespace moved out) and of each continuation; checks both."""
    stripped = prompt.rstrip()
    ids = tokenizer.encode(stripped, add_bos=False) if stripped else []
    if not ids:
        raise InvalidArgument("the prompt is empty: give some text for the continuations to follow")
    conts = []
    for c in continuations:
        cont = tokenizer.encode(split_whitespace(prompt, c)[1], add_bos=False)
        if not cont:
            raise InvalidArgument(f"label/choice {c!r} tokenizes to nothing: give non-empty text")
        conts.append(cont)
    return ids, conts


@dataclass(frozen=True)
class MultipleChoice:
    """log P(choice | question) per choice; `best` by the sum, `best_norm` by the sum per character."""

    choices: list[str]
    logliks: list[float]
    logliks_norm: list[float]
    best: int
    best_norm: int


def multiple_choice(lm, question: str, choices: list[str], delimiter: str = " ") -> MultipleChoice:
    """Score each choice as the continuation question + delimiter + choice.

    lm-evaluation-harness's two accuracies: `acc` picks argmax_i Σ log P(choice_i),
    `acc_norm` picks argmax_i Σ log P(choice_i) / len(choice_i) (characters),
    which removes the bias towards short answers.
    """
    if len(choices) < 2:
        raise InvalidArgument(f"multiple choice needs at least 2 choices, got {len(choices)}")
    prompt, conts = encode_pairs(lm.tokenizer, question, [delimiter + c for c in choices])
    scores = continuation_logprobs(lm, [prompt], conts)
    logliks = [float(s.sum()) for s in scores]
    norm = [ll / max(1, len(c)) for ll, c in zip(logliks, choices)]
    return MultipleChoice(
        list(choices), logliks, norm, max(range(len(choices)), key=logliks.__getitem__),
        max(range(len(choices)), key=norm.__getitem__),
    )


def multiple_choice_accuracy(results: list[MultipleChoice], answers: list[int]) -> dict[str, float]:
    """{'acc': ..., 'acc_norm': ...} over questions with gold answer indices."""
    if not results or len(results) != len(answers):
        raise InvalidArgument("give one gold answer index per multiple-choice result")
    n = len(results)
    return {
        "acc": sum(r.best == a for r, a in zip(results, answers)) / n,
        "acc_norm": sum(r.best_norm == a for r, a in zip(results, answers)) / n,
    }
