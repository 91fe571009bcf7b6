"""Log-likelihood of continuations: log P(c | prompt) = Σ_j log P(c_j | prompt, c_<j).

The building block of likelihood classification, multiple choice and
fill-in-the-blank. The prompts of a batch are prefilled once into the KV cache
(left-padded, as the generation engine does); each prompt's cache rows are then
repeated once per continuation and all continuations run in one more pass
(right-padded; causal attention keeps the padding out of the real tokens). So a
prompt is never recomputed per label: with L labels, the prompt costs one pass,
not L.

Tokenization: prompt and continuation are encoded separately and concatenated
(trailing whitespace of the prompt moves to the continuation, as
lm-evaluation-harness does), so "Sentiment:" + " positive" is scored as the ids
of "Sentiment:" followed by the ids of " positive".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.engine import attention_mask, left_pad


def split_whitespace(prompt: str, continuation: str) -> tuple[str, str]:
    """Move the prompt's trailing whitespace to the continuation.

    >>> split_whitespace("The capital is ", "Paris")
    ('The capital is', ' Paris')
    """
    stripped = prompt.rstrip()
    return stripped, prompt[len(stripped) :] + continuation


def cached_mask(pad: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """(B, 1, T, S) bool: query t (slot start + t) sees slot s if pad_b <= s <= start + t."""
    slots = torch.arange(start + length)  # (S,)
    queries = torch.arange(start, start + length)  # (T,)
    causal = slots[None, :] <= queries[:, None]  # (T, S)
    real = slots[None, :] >= pad[:, None]  # (B, S)
    return (causal[None] & real[:, None, :]).unsqueeze(1)  # (B, 1, T, S)


def _prefill(model, prompts: list[list[int]], pad_id: int, cache_len: int):
    """Left-padded prompts into a fresh cache; log-probs (B, V) of the token after each prompt."""
    ids, pad = left_pad(prompts, pad_id)  # (B, P), (B,)
    model.setup_cache(len(prompts), cache_len)
    positions = (torch.arange(ids.shape[1])[None, :] - pad[:, None]).clamp(min=0)  # (B, P)
    mask = attention_mask(pad, 0, ids.shape[1])  # None without padding; pad queries see themselves
    logits = model(ids, start=0, positions=positions, mask=mask, last_only=True)  # (B, 1, V)
    return torch.log_softmax(logits[:, -1].float(), dim=-1), pad


def continuation_logprobs(
    model, prompts: list[list[int]], continuations: list[list[int]], pad_id: int
) -> list[torch.Tensor]:
    """For each prompt b and continuation j: log P of every token of continuation j, (B, L) list of (n_j,).

    Returns a flat list in the order (b, j), b-major.
    """
    B, L = len(prompts), len(continuations)
    width, longest = max(len(p) for p in prompts), max(len(c) for c in continuations)
    try:
        with torch.inference_mode():
            first, pad = _prefill(model, prompts, pad_id, width + longest)  # (B, V)
            rest = None
            if longest > 1:
                rows = torch.arange(B).repeat_interleave(L)  # (B·L,)
                for block in model.blocks:
                    block.attn.cache.reorder(rows)
                ids = torch.full((B * L, longest - 1), pad_id, dtype=torch.long)
                for r in range(B * L):
                    tail = continuations[r % L][:-1]
                    ids[r, : len(tail)] = torch.tensor(tail, dtype=torch.long)
                pad_rows = pad[rows]
                positions = width - pad_rows[:, None] + torch.arange(longest - 1)[None, :]  # (B·L, T)
                mask = cached_mask(pad_rows, width, longest - 1)
                logits = model(ids, start=width, positions=positions, mask=mask)  # (B·L, T, V)
                rest = torch.log_softmax(logits.float(), dim=-1)
    finally:
        model.clear_cache()
    out = []
    for r in range(B * L):
        cont = torch.tensor(continuations[r % L], dtype=torch.long)
        scores = [first[r // L, cont[0]]]
        if len(cont) > 1:
            scores.append(rest[r, torch.arange(len(cont) - 1), cont[1:]])
        out.append(torch.cat([s.reshape(-1) for s in scores]).double())
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
    scores = continuation_logprobs(lm.model, [prompt], conts, lm.tokenizer.pad_id)
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
