"""SQuAD answer metrics (Rajpurkar et al., 2016; the official evaluate-v1.1.py).

    normalize_answer: lower case, punctuation removed, articles a/an/the removed, whitespace collapsed
    exact_match(p, g) = [normalize(p) == normalize(g)]
    token_f1(p, g)    = 2·P·R / (P + R) over the bag of normalized tokens (P = common/|p|, R = common/|g|)

Against several gold answers a prediction takes the max of each score.

    >>> normalize_answer("The  Denver Broncos!")
    'denver broncos'
    >>> token_f1("Denver Broncos won", "the Denver Broncos")
    0.8
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Token F1; two empty answers agree (1.0), one empty answer scores 0."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def contains_answer(prediction: str, gold: str) -> float:
    """1.0 when the normalized gold answer occurs in the normalized prediction (word-aligned)."""
    g = normalize_answer(gold)
    return float(bool(g) and f" {g} " in f" {normalize_answer(prediction)} ")


def best_of(metric, prediction: str, golds: Sequence[str]) -> float:
    """The max of metric(prediction, g) over the gold answers."""
    return max((metric(prediction, g) for g in golds), default=0.0)
