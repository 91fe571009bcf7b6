"""How well passages support a text: embedding similarity per sentence, token overlap, citations.

Support of a text by passages, the score `ask` thresholds on:

    support(a, P) = max over sentences s of the passages P of cos(e(a), e(s))

with e the shared MiniLM embedder (unit vectors, so cos is a dot product). It is the
sentence-level form of "is this claim in the sources": a copied or paraphrased
sentence scores near 1, an answer about something else scores low, and it needs no
second model. Token overlap (the share of the answer's new content words, those not
in the question, found in the passages) is computed beside it, and `ask` requires
both: on the calibration questions of benchmarks/rag_qa.py --calibrate the overlap
separates correct answers from answers to unanswerable questions better (AUC 0.83)
than the cosine (0.69), which rewards any on-topic sentence, right or wrong; the
cosine still catches answers that copy words from the passages into an unrelated claim.

Sample consistency (the SelfCheckGPT idea, Manakul et al. 2023): answers sampled
several times agree when the model knows and scatter when it makes things up; the
signal is the mean pairwise SQuAD token F1 of the samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations

from tokenloom.metrics.squad import normalize_answer, token_f1
from tokenloom.rag.chunking import split_sentences

_CITATION = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")
STOPWORDS = frozenset(
    "a an the of in on at to for from by with and or but is are was were be been being it its this that these "
    "those as which who whom what when where why how do does did has have had not no question answer".split())


@dataclass(frozen=True)
class Citations:
    text: str  # the answer with unknown citation numbers removed
    cited: tuple[int, ...]  # passage numbers (1-based) named in the answer, in first-mention order
    unknown: tuple[int, ...]  # numbers that named no given passage, removed from text


def check_citations(text: str, n_passages: int) -> Citations:
    """Every [n] or [n, m] of the answer checked against passages 1..n_passages.

    >>> check_citations("Paris [1][7]. Also Lyon [2, 9].", 3)
    Citations(text='Paris [1]. Also Lyon [2].', cited=(1, 2), unknown=(7, 9))
    """
    cited, unknown = [], []

    def keep(match: re.Match) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        good = [n for n in numbers if 1 <= n <= n_passages]
        for n in numbers:
            target = cited if n in good else unknown
            if n not in target:
                target.append(n)
        return f" [{', '.join(map(str, good))}]" if good else ""

    cleaned = _CITATION.sub(keep, text)
    return Citations(cleaned.strip(), tuple(cited), tuple(unknown))


def strip_citations(text: str) -> str:
    return " ".join(_CITATION.sub("", text).split())


def sentences_of(texts: list[str]) -> list[tuple[int, str]]:
    """(index of its text, sentence) for every sentence of every text."""
    return [(i, s.text) for i, text in enumerate(texts) for s in split_sentences(text)]


@dataclass(frozen=True)
class Support:
    score: float  # max cosine with a passage sentence
    passage: int  # index (0-based) of the passage holding that sentence; -1 if none
    sentence: str


def support_many(embedder, claims: list[str], passages: list[list[str]]) -> list[Support]:
    """support(claims[i], passages[i]) for every i, with one encode call for all texts."""
    units = [sentences_of(p) for p in passages]
    texts = list(claims) + [s for u in units for _, s in u]
    vectors = embedder.encode(texts) if texts else None
    out, row = [], len(claims)
    for i, unit in enumerate(units):
        if not unit or not claims[i].strip():
            out.append(Support(0.0, -1, ""))
            row += len(unit)
            continue
        scores = vectors[row:row + len(unit)] @ vectors[i]  # (S,)
        best = int(scores.argmax())
        out.append(Support(float(scores[best]), unit[best][0], unit[best][1]))
        row += len(unit)
    return out


def content_words(text: str) -> list[str]:
    return [w for w in normalize_answer(text).split() if w not in STOPWORDS]


def token_overlap(answer: str, passages: list[str], question: str = "") -> float:
    """Share of the answer's content words, less the question's, that occur in the passages
    (1.0 for an answer with none: nothing to check).

    >>> token_overlap("Denver Broncos won", ["The Denver Broncos beat the Panthers."])
    0.6666666666666666
    >>> token_overlap("Denver Broncos won", ["The Denver Broncos beat the Panthers."], "Who won?")
    1.0
    """
    asked = set(content_words(question))
    words = [w for w in content_words(strip_citations(answer)) if w not in asked]
    if not words:
        return 1.0
    vocabulary = set(normalize_answer(" ".join(passages)).split())
    return sum(w in vocabulary for w in words) / len(words)


def echoes_question(answer: str, question: str) -> bool:
    """An answer that adds no content word to the question's ("Question: Who won?") answers nothing.

    >>> echoes_question("Question: Who won the game?", "Who won the game?"), echoes_question("Denver", "Who won?")
    (True, False)
    """
    asked = set(content_words(question))
    return all(w in asked for w in content_words(strip_citations(answer)))


def consistency(answers: list[str]) -> float | None:
    """Mean pairwise token F1 among sampled answers; None for fewer than two.

    >>> consistency(["Denver Broncos", "the Denver Broncos", "Carolina"])
    0.3333333333333333
    """
    if len(answers) < 2:
        return None
    pairs = list(combinations([strip_citations(a) for a in answers], 2))
    return sum(token_f1(a, b) for a, b in pairs) / len(pairs)
