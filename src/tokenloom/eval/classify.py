"""A generative model as a classifier ("Sentiment of this review?" -> "positive").

Three ways, all zero-shot:

- likelihood: each label is the continuation of the prompt; the label with the
  largest log P(label | prompt) = Σ_j log P(label_j | prompt, label_<j) wins, and
  P(label) = softmax over labels of those sums.
- mean: the same with the per-token mean log-probability (long labels are not
  penalised for their length).
- calibrated: contextual calibration (Zhao et al. 2021, "Calibrate Before Use").
  The label distribution p for a content-free input ("N/A", "", "[MASK]" in the
  template, averaged) measures the prompt's own bias; each text's p is divided
  by it and renormalised: q_i = (p_i / p_cf,i) / Σ_k (p_k / p_cf,k).
  Worked example: p = (0.7, 0.3) and p_cf = (0.8, 0.2) give q ∝ (0.875, 1.5),
  so q = (0.368, 0.632): the label the prompt favours anyway loses.
- generate: ask the instruct model in its chat template, greedily, and map its
  answer to the first label it names; an answer naming no label gives None.

`fill_blank` ranks candidate words for a blank by the likelihood of the whole
sentence, or lets the model write the blank.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.eval.likelihood import continuation_logprobs, encode_pairs, split_whitespace
from tokenloom.eval.perplexity import prefix_token_id

DEFAULT_TEMPLATE = "Review: {text}\nSentiment:"
CONTENT_FREE = ("N/A", "", "[MASK]")
METHODS = ("likelihood", "mean", "calibrated", "generate")
INSTRUCTION = "Classify the text as one of: {labels}. Answer with the label only.\n\nText: {text}"


@dataclass
class Classification:
    label: str | None  # None when a generated answer names no label
    probs: dict[str, float] = field(default_factory=dict)
    loglik: dict[str, float] = field(default_factory=dict)  # Σ log P(label tokens | prompt)
    mean_loglik: dict[str, float] = field(default_factory=dict)
    answer: str | None = None  # the generated text (method "generate")


def fill_template(template: str, text: str) -> str:
    if "{text}" not in template:
        raise InvalidArgument(f"the template must contain {{text}}, got {template!r}")
    return template.replace("{text}", text)


def label_scores(lm, prompts: list[str], labels: list[str], prefix: str = " ", batch_size: int = 8):
    """(sums, means): tensors (N, L) of Σ and mean log P(prefix + label | prompt), one prefill per prompt."""
    sums, means = torch.empty(len(prompts), len(labels), dtype=torch.float64), None
    means = torch.empty_like(sums)
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        encoded = [encode_pairs(lm.tokenizer, p, [prefix + label for label in labels]) for p in chunk]
        groups: dict[tuple, list[int]] = {}  # prompts whose continuations tokenize alike share a pass
        for i, (_, conts) in enumerate(encoded):
            groups.setdefault(tuple(map(tuple, conts)), []).append(i)
        for conts, rows in groups.items():
            scores = continuation_logprobs(lm, [encoded[i][0] for i in rows], [list(c) for c in conts])
            for k, s in enumerate(scores):
                row, j = start + rows[k // len(labels)], k % len(labels)
                sums[row, j], means[row, j] = s.sum(), s.mean()
    return sums, means


def calibrate(probs: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """q = normalise(p / p_cf) row by row; probs (N, L), content_free (L,).

    >>> calibrate(torch.tensor([[0.7, 0.3]]), torch.tensor([0.8, 0.2])).round(decimals=3)
    tensor([[0.3680, 0.6320]])
    """
    q = probs / content_free[None, :]
    return q / q.sum(dim=-1, keepdim=True)


def _check(texts, labels, method: str) -> None:
    if method not in METHODS:
        raise InvalidArgument(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise InvalidArgument(f"give at least 2 distinct labels, got {labels!r}")
    if any(not label.strip() for label in labels):
        raise InvalidArgument("a label is empty: every label needs some text")
    if not texts:
        raise InvalidArgument("no texts to classify")


def classify(
    lm, texts: list[str], labels: list[str], template: str = DEFAULT_TEMPLATE, method: str = "likelihood",
    *, prefix: str = " ", batch_size: int = 8,
) -> list[Classification]:
    """One `Classification` per text: the label, P over labels, and the label log-likelihoods."""
    texts, labels = list(texts), list(labels)
    _check(texts, labels, method)
    if method == "generate":
        return classify_by_generation(lm, texts, labels, batch_size=batch_size)
    prompts = [fill_template(template, t) for t in texts]
    sums, means = label_scores(lm, prompts, labels, prefix, batch_size)
    probs = torch.softmax(means if method == "mean" else sums, dim=-1)  # (N, L)
    if method == "calibrated":
        free = [fill_template(template, t) for t in CONTENT_FREE]
        free_sums, _ = label_scores(lm, free, labels, prefix, batch_size)
        probs = calibrate(probs, torch.softmax(free_sums, dim=-1).mean(dim=0))
    out = []
    for i in range(len(texts)):
        best = int(probs[i].argmax())
        out.append(Classification(
            labels[best], dict(zip(labels, probs[i].tolist())),
            dict(zip(labels, sums[i].tolist())), dict(zip(labels, means[i].tolist())),
        ))
    return out


def parse_label(answer: str, labels: list[str]) -> str | None:
    """The label named first in a generated answer (whole words, any case), else None.

    >>> parse_label("The sentiment is Positive.", ["negative", "positive"])
    'positive'
    """
    found = []
    for label in labels:
        match = re.search(rf"(?<!\w){re.escape(label)}(?!\w)", answer, flags=re.IGNORECASE)
        if match:
            found.append((match.start(), -len(label), label))
    return min(found)[2] if found else None


def classify_by_generation(
    lm, texts: list[str], labels: list[str], instruction: str = INSTRUCTION, *, batch_size: int = 8,
    max_tokens: int = 8,
) -> list[Classification]:
    """Ask the model in its chat template (greedy) and map each answer to a label."""
    from tokenloom.generation.params import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    out = []
    for start in range(0, len(texts), batch_size):
        prompts = [
            lm.tokenizer.apply_chat_template(
                [{"role": "user", "content": instruction.format(labels=", ".join(labels), text=t)}]
            )
            for t in texts[start : start + batch_size]
        ]
        for completion in lm.generate(prompts, params):
            out.append(Classification(parse_label(completion.text, labels), answer=completion.text))
    return out


@dataclass(frozen=True)
class FillBlank:
    sentence: str  # with the best candidate in the blank
    ranking: list[tuple[str, float]]  # (candidate, log P(sentence)), best first


def fill_blank(lm, sentence: str, candidates: list[str] | None = None, blank: str = "___") -> FillBlank:
    """Rank candidates for the blank by log P(whole sentence), or generate the blank greedily.

    The sentence is scored after <|endoftext|> so that its first token counts too;
    the part before the blank is the shared prefix (one prefill for all candidates).
    "The capital of France is ___." with ["Paris", "Rome"] -> "The capital of France is Paris."
    """
    if sentence.count(blank) != 1:
        raise InvalidArgument(f"the sentence must contain the blank {blank!r} exactly once")
    before, after = sentence.split(blank)
    if candidates is None:
        candidates = [_generate_blank(lm, before, after)]
    candidates = [c for c in candidates]
    if not candidates or any(not c.strip() for c in candidates):
        raise InvalidArgument("give at least one non-empty candidate for the blank")
    head, _ = split_whitespace(before, "")
    prompt = [prefix_token_id(lm.tokenizer)] + (lm.tokenizer.encode(head, add_bos=False) if head else [])
    conts = [lm.tokenizer.encode(split_whitespace(before, c + after)[1], add_bos=False) for c in candidates]
    scores = continuation_logprobs(lm, [prompt], conts)
    ranking = sorted(zip(candidates, (float(s.sum()) for s in scores)), key=lambda pair: -pair[1])
    return FillBlank(before + ranking[0][0] + after, ranking)


def _generate_blank(lm, before: str, after: str) -> str:
    from tokenloom.generation.params import SamplingParams

    if not before.strip():
        raise InvalidArgument("to generate the blank, it needs some text before it")
    stop = [after.strip()[0]] if after.strip() else []
    completion = lm.generate(before.rstrip(), SamplingParams(temperature=0.0, max_tokens=8, stop=stop + ["\n"]))
    answer = completion.text.strip()
    if not answer:
        raise InvalidArgument("the model wrote nothing for the blank; give candidates instead")
    return answer
