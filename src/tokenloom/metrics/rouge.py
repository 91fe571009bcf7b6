"""ROUGE-N, ROUGE-L and ROUGE-Lsum (Lin, 2004), number for number with rouge-score 0.1.2.

For a hypothesis (candidate) with n-gram counts h and a reference with counts r:

    hits = Σ_g min(h(g), r(g))     P = hits / |hyp n-grams|     R = hits / |ref n-grams|
    F = 2·P·R / (P + R)   (0 when P + R = 0)

ROUGE-L uses hits = LCS(ref, hyp) over tokens. ROUGE-Lsum splits both texts into
sentences on newlines and, for each reference sentence, takes the union of its
LCSs with every hypothesis sentence; a token counts as a hit only while both
texts still have an unused copy of it. The notes define ROUGE as recall R; the
field reports F; all three are given.

Worked example (ROUGE-1): ref 'the cat sat', hyp 'the cat the': hits = 1 ('the',
clipped) + 1 ('cat') = 2, P = 2/3, R = 2/3, F = 2/3.

With several references per segment each type keeps the reference with the best
F (the first on ties), as rouge-score's `score_multi`. The corpus value of each
type is the mean over segments, as rouge-score users compute it.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, compress
from operator import itemgetter
from typing import NamedTuple

from tokenloom.errors import InvalidArgument
from tokenloom.metrics.base import format_signature, register
from tokenloom.metrics.bootstrap import DEFAULT_SEED, Interval, bootstrap_means
from tokenloom.metrics.lcs import lcs_length, lcs_picks, match_masks
from tokenloom.metrics.text import clipped_overlap, counts, ngram_iter, rouge_line_tokens, rouge_tokens

DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_NGRAM_TYPE = re.compile(r"rouge[1-9]$")  # rouge-score 0.1.2 takes one digit: rouge10 is "Invalid rouge type"
ALLOWED_TYPES = "rouge1 ... rouge9, rougeL, rougeLsum"


class RougeScore(NamedTuple):
    """Precision, recall and F1 of one ROUGE type."""

    precision: float
    recall: float
    fmeasure: float


_ZERO = RougeScore(0, 0, 0)


def _score(hits: int, hyp_total: int, ref_total: int) -> RougeScore:
    precision, recall = hits / hyp_total, hits / ref_total
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return RougeScore(precision, recall, f)


class _Text:
    """A tokenized text: all tokens, tokens per non-empty line, the distinct
    n-grams of each order asked for (for unigrams: a dict of counts)."""

    __slots__ = ("tokens", "sentences", "keys")

    def __init__(self, text: str, stem: bool, unicode: bool, orders: Sequence[int]):
        if "\n" in text:
            self.sentences = rouge_line_tokens(text, stem, unicode)
            self.tokens = tuple(chain.from_iterable(self.sentences))
        else:
            self.tokens = rouge_tokens(text, stem, unicode)
            self.sentences = [self.tokens] if text else []
        self.keys = {n: counts(self.tokens) if n == 1 else set(ngram_iter(self.tokens, n)) for n in orders}


def _unigram_hits(ref: _Text, hyp: _Text) -> int:
    """Σ_w min(c_hyp(w), c_ref(w)) from the two count dicts."""
    ref_counts, hyp_counts = ref.keys[1], hyp.keys[1]
    common = ref_counts.keys() & hyp_counts.keys()
    if len(ref_counts) == len(ref.tokens) or len(hyp_counts) == len(hyp.tokens):
        return len(common)  # one side repeats no word: every shared word counts once
    return sum(map(min, map(ref_counts.__getitem__, common), map(hyp_counts.__getitem__, common)))


def _rouge_n(ref: _Text, hyp: _Text, n: int) -> RougeScore:
    if n == 1:
        hits = _unigram_hits(ref, hyp)
    else:
        hits = clipped_overlap(hyp.tokens, hyp.keys[n], ref.tokens, ref.keys[n], n)
    return _score(hits, max(len(hyp.tokens) - n + 1, 1), max(len(ref.tokens) - n + 1, 1))


def _rouge_l(ref: _Text, hyp: _Text) -> RougeScore:
    if not ref.tokens or not hyp.tokens:
        return _ZERO
    return _score(lcs_length(ref.tokens, hyp.tokens), len(hyp.tokens), len(ref.tokens))


def union_lcs_hits(ref_sentences: Sequence[Sequence[str]], hyp_sentences: Sequence[Sequence[str]]) -> int:
    """ROUGE-Lsum hits: per reference sentence, the union of its LCS positions with
    each hypothesis sentence; a token is a hit while both sides have a copy left.

    ref [['a', 'b', 'c']], hyp [['a', 'x'], ['c']]: union {a, c} -> 2 hits.
    """
    ref_left = counts(chain.from_iterable(ref_sentences))  # copies not yet used as hits
    hyp_left = counts(chain.from_iterable(hyp_sentences))
    hyp_masks = [(hyp, match_masks(hyp)) for hyp in hyp_sentences]
    hits = 0
    for sentence in ref_sentences:
        # words the hypothesis never uses can be in no LCS: leave them out once here
        items = list(compress(enumerate(sentence), map(hyp_left.__contains__, sentence)))
        if not items:
            continue
        union = set().union(*(lcs_picks(items, hyp, masks) for hyp, masks in hyp_masks))
        for index in sorted(union):
            token = sentence[index]
            if hyp_left[token] > 0 and ref_left[token] > 0:
                hits += 1
                hyp_left[token] -= 1
                ref_left[token] -= 1
    return hits


def _rouge_lsum(ref: _Text, hyp: _Text, lcs_score: RougeScore | None) -> RougeScore:
    if not ref.sentences or not hyp.sentences or not ref.tokens or not hyp.tokens:
        return _ZERO
    if len(ref.sentences) == 1 and len(hyp.sentences) == 1:
        # one sentence each: the union is the LCS itself, so Lsum equals L
        return lcs_score if lcs_score is not None else _rouge_l(ref, hyp)
    hits = union_lcs_hits(ref.sentences, hyp.sentences)
    return _score(hits, len(hyp.tokens), len(ref.tokens))


def _score_pair(ref: _Text, hyp: _Text, plan: Sequence[tuple[str, int]]) -> dict[str, RougeScore]:
    """Every type of the plan ((type, n) pairs, rougeL before rougeLsum) for one pair."""
    scores: dict[str, RougeScore] = {}
    for kind, n in plan:
        if n:
            scores[kind] = _rouge_n(ref, hyp, n)
        elif kind == "rougeL":
            scores[kind] = _rouge_l(ref, hyp)
        else:
            scores[kind] = _rouge_lsum(ref, hyp, scores.get("rougeL"))
    return scores


def _check_types(types) -> tuple[str, ...]:
    if isinstance(types, str):
        types = [t.strip() for t in types.split(",") if t.strip()]
    types = tuple(types)
    for kind in types:
        if not isinstance(kind, str) or (kind not in ("rougeL", "rougeLsum") and not _NGRAM_TYPE.match(kind)):
            raise InvalidArgument(f"unknown ROUGE type {kind!r}; allowed: {ALLOWED_TYPES} (as rouge-score)")
    if not types:
        raise InvalidArgument(f"give at least one ROUGE type; allowed: {ALLOWED_TYPES}")
    return types


def _plan(types: Sequence[str]) -> list[tuple[str, int]]:
    """(type, n) with n = 0 for L and Lsum, rougeL first so that Lsum can reuse its LCS."""
    plan = [(kind, 0 if kind.startswith("rougeL") else int(kind[5:])) for kind in types]
    return sorted(plan, key=lambda item: item[0] != "rougeL")


def _best_scores(hypothesis: str, refs: Sequence[str], types, plan, stem: bool, unicode: bool):
    orders = [n for _, n in plan if n]
    hyp = _Text(hypothesis, stem, unicode, orders)
    candidates = [_score_pair(_Text(ref, stem, unicode, orders), hyp, plan) for ref in refs]
    if len(candidates) == 1:
        return candidates[0]
    best = {}
    for kind in types:
        fs = [scores[kind].fmeasure for scores in candidates]
        best[kind] = candidates[fs.index(max(fs))][kind]
    return best


def rouge_segment(hypothesis: str, references: str | Sequence[str], types=DEFAULT_TYPES,
                  stem: bool = False, unicode: bool = False) -> dict[str, RougeScore]:
    """Scores of one hypothesis against one reference or the best of several."""
    types = _check_types(types)
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise InvalidArgument("every segment needs at least one reference")
    return _best_scores(hypothesis, refs, types, _plan(types), stem, unicode)


@dataclass(frozen=True)
class RougeResult:
    """Corpus ROUGE: per type the mean P/R/F over segments, the per-segment scores,
    bootstrap intervals of (P, R, F) when asked for, and the signature."""

    types: tuple[str, ...]
    mean: dict[str, RougeScore]
    segments: tuple[dict[str, RougeScore], ...]
    signature: str
    intervals: dict[str, tuple[Interval, Interval, Interval]] | None = None

    def __getitem__(self, kind: str) -> RougeScore:
        return self.mean[kind]

    def to_dict(self) -> dict:
        """{'rouge1': {'precision': .., 'recall': .., 'fmeasure': ..}, ...} of the means."""
        return {kind: self.mean[kind]._asdict() for kind in self.types}

    def segment_dicts(self) -> list[dict]:
        """The same layout as `to_dict`, one dict per segment."""
        return [{kind: s[kind]._asdict() for kind in self.types} for s in self.segments]

    def __str__(self) -> str:
        lines = []
        for kind in self.types:
            p, r, f = self.mean[kind]
            lines.append(f"{kind}: P = {100 * p:.2f} R = {100 * r:.2f} F = {100 * f:.2f}")
        return "\n".join(lines)


def _mean(scores: Sequence[RougeScore]) -> RougeScore:
    """Mean precision, recall and F over segments (what rouge-score users report)."""
    count = len(scores)
    return RougeScore(*(sum(map(itemgetter(i), scores)) / count for i in range(3)))


def _segment_references(hypotheses, references) -> list[list[str]]:
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise InvalidArgument("rouge takes a list of hypotheses and a list of references")
    if len(hypotheses) != len(references):
        raise InvalidArgument(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise InvalidArgument("ROUGE needs at least one segment")
    return [[ref] if isinstance(ref, str) else list(ref) for ref in references]


@register("rouge")
def rouge(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]],
          types=DEFAULT_TYPES, stem: bool = False, unicode: bool = False, bootstrap: int = 0,
          confidence: float = 0.95, seed: int = DEFAULT_SEED) -> RougeResult:
    """ROUGE of every segment and the corpus means; each reference is a string or a
    list of strings (best match). `unicode=True` tokenizes any script (not
    rouge-score compatible). `bootstrap=B` adds B-sample confidence intervals."""
    types = _check_types(types)
    per_segment = _segment_references(hypotheses, references)
    if not all(per_segment):
        raise InvalidArgument("every segment needs at least one reference")
    plan = _plan(types)
    segments = tuple(_best_scores(h, refs, types, plan, stem, unicode) for h, refs in zip(hypotheses, per_segment))
    mean = {kind: _mean([s[kind] for s in segments]) for kind in types}
    intervals = None
    if bootstrap:
        import numpy as np

        state = np.random.RandomState(seed)
        intervals = {kind: tuple(bootstrap_means([s[kind] for s in segments], bootstrap, confidence, state))
                     for kind in types}
    nrefs = {len(refs) for refs in per_segment}
    signature = format_signature({
        "nrefs": nrefs.pop() if len(nrefs) == 1 else "var", "types": ",".join(types), "stem": stem,
        "tok": "unicode(not-rouge-score)" if unicode else "rouge-score",
        "bs": bootstrap or None, "seed": seed if bootstrap else None,
    })
    return RougeResult(types, mean, segments, signature, intervals)
