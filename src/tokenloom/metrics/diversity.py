"""Repetition and diversity of generated text: the first failure mode, measured.

A text may be a string (split on whitespace) or a sequence of tokens (words or
token ids). All functions are pure and deterministic.

    >>> distinct_n(["a b a b"], 2)          # bigrams ab, ba, ab: 2 distinct of 3
    0.6666666666666666
    >>> repetition_rate("a b a b", 2)       # the second 'a b' repeats the first
    0.3333333333333333
    >>> detect_loop("so I said so I said so I".split())
    (3, 2)
"""

import math
from collections import Counter
from collections.abc import Sequence

from tokenloom.errors import InvalidArgument


def _tokens(text) -> Sequence:
    return text.split() if isinstance(text, str) else text


def _check_order(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise InvalidArgument(f"n-gram order must be an integer >= 1; got {n!r}")


def _ngrams(tokens: Sequence, n: int) -> list[tuple]:
    return list(zip(*(tokens[i:] for i in range(n))))


def distinct_n(texts, n: int = 1) -> float:
    """distinct-n (Li et al., 2016) over a set of samples:

        distinct-n = |unique n-grams over all texts| / |n-grams over all texts|

    0.0 when there are no n-grams. ['a b', 'a c'], n=1 -> 3/4.
    """
    _check_order(n)
    if isinstance(texts, str):
        texts = [texts]
    grams = [g for text in texts for g in _ngrams(_tokens(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text, n: int = 1) -> float:
    """Share of the n-grams of one text that repeat an earlier n-gram of it:

        rep-n = 1 − |unique n-grams| / |n-grams|

    'the cat the cat', n=2 -> n-grams 'the cat', 'cat the', 'the cat': 1/3.
    """
    _check_order(n)
    grams = _ngrams(_tokens(text), n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def self_bleu(samples: Sequence[str], **bleu_options) -> float:
    """Self-BLEU (Zhu et al., 2018): the mean sentence BLEU of each sample against
    all the other samples as references. High means the samples repeat each other.

    Uses our sacrebleu-exact `sentence_bleu` (13a, exp smoothing, effective order
    unless overridden). Needs at least two samples.
    """
    from tokenloom.metrics.bleu import sentence_bleu

    if isinstance(samples, str) or len(samples) < 2:
        raise InvalidArgument("self_bleu needs a list of at least two samples")
    scores = [sentence_bleu(sample, [*samples[:i], *samples[i + 1:]], **bleu_options).score
              for i, sample in enumerate(samples)]
    return sum(scores) / len(scores)


def _periodic_suffix(tokens: Sequence, period: int) -> int:
    """Length of the longest suffix with the given period: tokens[i] == tokens[i - period]."""
    length = period
    i = len(tokens) - 1
    while i - period >= 0 and tokens[i] == tokens[i - period]:
        length += 1
        i -= 1
    return length


def detect_loop(tokens: Sequence, min_repeats: int = 2, max_period: int | None = None) -> tuple[int, int]:
    """Is the end of a continuation stuck in a cycle? Returns (period, repeats).

    For each period p the longest suffix that repeats with period p is found;
    repeats = its length // p (full cycles; a trailing partial cycle is allowed).
    The period whose suffix is longest wins, the shortest such period on ties;
    (0, 0) when no period reaches `min_repeats` full cycles.

    'x a b a b a' -> (2, 2): the suffix 'a b a b a' has period 2 and 2 full cycles.
    'a a a a' -> (1, 4), not (2, 2): the shorter period covers as much.
    """
    if min_repeats < 2:
        raise InvalidArgument(f"min_repeats must be >= 2; got {min_repeats}")
    tokens = list(tokens)
    longest = len(tokens) // min_repeats if max_period is None else min(max_period, len(tokens) // min_repeats)
    best_period, best_length = 0, 0
    for period in range(1, longest + 1):
        length = _periodic_suffix(tokens, period)
        if length // period >= min_repeats and length > best_length:
            best_period, best_length = period, length
    return (best_period, best_length // best_period) if best_period else (0, 0)


def zipf_coefficient(tokens, top: int | None = None) -> float:
    """Zipf exponent s of a sample's token frequencies, fitted by least squares:

        log f(r) ≈ c − s · log r      (r = frequency rank, 1 = most frequent)

    Natural text gives s near 1; degenerate, repetitive samples give larger s.
    Needs at least two distinct tokens. Frequencies 4, 2, 1 (ranks 1-3) -> s ≈ 1.23.
    `top` limits the fit to the most frequent ranks.
    """
    counts = sorted(Counter(_tokens(tokens)).values(), reverse=True)[:top]
    if len(counts) < 2:
        raise InvalidArgument("zipf_coefficient needs at least two distinct tokens")
    xs = [math.log(rank) for rank in range(1, len(counts) + 1)]
    ys = [math.log(count) for count in counts]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    variance = sum((x - mean_x) ** 2 for x in xs)
    return -covariance / variance


SELF_BLEU_SAMPLES = 100


def diversity_report(texts: Sequence[str]) -> dict[str, float]:
    """The usual diversity numbers of a set of samples (one string each):
    distinct-1/2/3 over all samples, the mean repetition rate of 4-grams per
    sample, how many samples end in a loop, the Zipf coefficient of all tokens,
    and self-BLEU over the first 100 samples (it costs O(samples²))."""
    joined = [token for text in texts for token in _tokens(text)]
    report = {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_3": distinct_n(texts, 3),
        "repetition_rate": sum(repetition_rate(t, 4) for t in texts) / len(texts) if texts else 0.0,
        "loops": sum(detect_loop(_tokens(t))[0] > 0 for t in texts),
        "zipf_coefficient": zipf_coefficient(joined) if len(set(joined)) > 1 else float("nan"),
    }
    if len(texts) >= 2:
        report["self_bleu"] = self_bleu(list(texts[:SELF_BLEU_SAMPLES]))
    return report
