"""Excerpts and extractive answers: show the model the sentence that matters, answer with a span of it.

Two steps between retrieval and the answer, both measured on SQuAD questions by
`benchmarks/rag_qa.py` with the 135M default model:

**Excerpts** (`excerpts`). The model is shown the `n` sentences of the retrieved passages
closest to the question, not whole paragraphs. Each sentence s is ranked by

    rank(s) = cos(e(q), e(s)) + 0.05 · |words(q) ∩ words(s)|

(MiniLM cosine plus a small reward for every question word it repeats; the weight was
chosen on the calibration paragraphs, where the best sentence held the gold answer for
81.7% of questions against 76.4% by cosine alone). A small model reads one sentence far
better than a paragraph: free answers from the best sentence scored EM 21.7 against 12.5
from the whole top passage (120 test questions).

**Extractive answers** (`best_spans`). Instead of writing an answer, the model scores every
span of up to `max_words` words of the excerpt as its answer:

    score(s) = log P(" " + s | prompt) + log P(" [" | prompt, " " + s)

the span followed by the opening of its citation, the way the prompt's worked examples
end. The answer is the span with the highest score (the sum, not the mean per token: on 120
questions the sum gave EM 31.7, the mean 28.3, the mean per character 25.0). Every answer is
then a quotation of its passage, which is what SQuAD asks and what a citation promises.

Cost: the spans that start at the same word are prefixes of one another in token space
(the tokenizer's pre-split never joins two words), so one scoring pass over the longest
span gives every shorter one: about one pass per word of the excerpt, sharing the prompt
through the prefix cache. A span whose tokens are not a prefix of the longer one gets a
pass of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.rag.chunking import split_sentences

WORD_WEIGHT = 0.05  # rank(s) = cosine + WORD_WEIGHT · shared question words (calibration paragraphs)
MAX_WORDS = 8
JOBS_AT_ONCE = 64
_EDGE = "\"'()[]{}.,;:!?"
_WORDS = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return set(_WORDS.findall(text.lower()))


def excerpts(embedder, question: str, hits: list, n: int) -> list:
    """The n sentences of `hits` ranked highest for the question, as hits of their own.

    Each returned hit is its passage with `text` replaced by the sentence; they come in
    rank order, best first. n = 0 gives the passages unchanged."""
    if n == 0 or not hits:
        return list(hits)
    pool = [(hit, s.text) for hit in hits for s in split_sentences(hit.text)] or [(h, h.text) for h in hits]
    vectors = embedder.encode([question] + [text for _, text in pool])
    asked = _words(question)
    ranks = [float(vectors[0] @ vectors[i + 1]) + WORD_WEIGHT * len(asked & _words(text))
             for i, (_, text) in enumerate(pool)]
    order = sorted(range(len(pool)), key=lambda i: (-ranks[i], i))[:n]
    return [replace(pool[i][0], text=pool[i][1]) for i in order]


@dataclass(frozen=True)
class Span:
    text: str  # the quoted words, without the citation
    score: float  # log P(" " + text) + log P(" [" after it)
    tokens: int  # tokens scored, the citation opener included

    @property
    def mean_logprob(self) -> float:
        return self.score / self.tokens


def candidate_spans(text: str, max_words: int = MAX_WORDS) -> list[tuple[int, str]]:
    """(first word index, span) for every run of 1..max_words words, quotes and stops trimmed at its ends.

    >>> candidate_spans("Ann (a cook) came.", 2)
    [(0, 'Ann'), (0, 'Ann (a'), (1, 'a'), (1, 'a cook'), (2, 'cook'), (2, 'cook) came'), (3, 'came')]
    """
    words, out, seen = text.split(), [], set()
    for i in range(len(words)):
        for j in range(i, min(len(words), i + max_words)):
            span = " ".join(words[i:j + 1]).strip(_EDGE)
            if span and span not in seen:
                seen.add(span)
                out.append((i, span))
    return out


def best_spans(lm, prompt: str, excerpt: str, max_words: int = MAX_WORDS) -> list[Span]:
    """Every candidate span of `excerpt` scored as the continuation of `prompt`, best first.

    The cost grows with the excerpt: one scoring pass per word. On the 2-core AMD EPYC of
    docs/quality.md a SQuAD sentence (about 25 words) takes 1.7 s; a 150-word run without
    sentence ends took over a minute beside other work."""
    if not isinstance(max_words, int) or max_words < 1:
        raise InvalidArgument(f"max_words must be a whole number >= 1, got {max_words!r}")
    tokenizer = lm.tokenizer
    prompt_ids = lm.encode_prompt(prompt.rstrip())
    opener = tokenizer.encode(" [", add_bos=False)
    if len(opener) != 1:
        raise InvalidArgument("extractive answers need a tokenizer that encodes ' [' as one token")
    spans = sorted(((start, span, tokenizer.encode(" " + span, add_bos=False))
                    for start, span in candidate_spans(excerpt, max_words)), key=lambda s: (s[0], -len(s[2])))
    jobs: list[list[int]] = []  # continuations to score; each candidate is a prefix of one of them
    where: list[int] = []
    by_start: dict[int, list[int]] = {}
    for start, _, ids in spans:
        home = next((j for j in by_start.get(start, []) if jobs[j][:len(ids)] == ids), None)
        if home is None:
            home = len(jobs)
            jobs.append(ids)
            by_start.setdefault(start, []).append(home)
        where.append(home)
    if not jobs:
        return []
    logps = []
    for first in range(0, len(jobs), JOBS_AT_ONCE):  # bounds the logits held at once (rows × vocabulary each)
        batch = jobs[first:first + JOBS_AT_ONCE]
        for ids, logits in zip(batch, lm.scheduler.score_many([(prompt_ids + ids, len(ids) + 1) for ids in batch])):
            logp = torch.log_softmax(logits.double(), dim=-1)  # row t scores ids[t]; the last row follows all of ids
            taken = torch.cumsum(logp[torch.arange(len(ids)), torch.tensor(ids)], dim=0)
            logps.append((taken, logp[:, opener[0]]))
    out = []
    for (_, span, ids), home in zip(spans, where):
        taken, close = logps[home]
        out.append(Span(span, float(taken[len(ids) - 1] + close[len(ids)]), len(ids) + 1))
    out.sort(key=lambda s: (-s.score, s.text))
    return out


def draw(scores: list[float], count: int, temperature: float, seed: int) -> list[int]:
    """`count` indices drawn with P(i) ∝ exp(scores[i] / T) by a generator seeded with `seed`."""
    if not scores or count < 1:
        return []
    weights = torch.softmax(torch.tensor(scores, dtype=torch.float64) / max(temperature, 1e-6), dim=0)
    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial(weights, count, replacement=True, generator=generator).tolist()
