"""BLEU (Papineni et al., 2002), number for number with sacrebleu 2.x.

    BLEU = BP · exp( Σ_n w_n · log p_n ),   w_n = 1/N (N = max order, 4 by default)
    p_n  = Σ_g min(c_hyp(g), max_r c_r(g)) / Σ_g c_hyp(g)      (clipped n-gram precision)
    BP   = 1 if c > r else exp(1 − r/c)                       (c, r: corpus lengths)

r is the sum over segments of the reference length closest to the hypothesis
length (ties go to the shorter reference). The corpus score sums the per-segment
statistics first; it is not a mean of sentence scores.

Worked example (one segment, tokenizer 'none'): hyp 'the the the cat', ref 'the cat'.
Unigrams: 'the' occurs 3 times but the reference has one, so clipping keeps 1;
'cat' matches: p_1 = 2/4. Bigrams: 'the cat' matches: p_2 = 1/3. c = 4 > r = 2, BP = 1.

Smoothing of zero precisions (Chen & Cherry, 2014): `exp` (the default: the k-th
zero-match order gets 1/(2^k · total)), `floor` (value/total, default 0.1),
`add-k` (k added to matches and totals of every order from 2 up, default 1),
`none`. With effective order (sentence BLEU's default) the mean runs only over
the orders the hypothesis is long enough to have.
"""

import math
from functools import lru_cache
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from tokenloom.errors import InvalidArgument
from tokenloom.metrics.base import (
    check_choice,
    count_references,
    format_signature,
    register,
    transpose_references,
)
from tokenloom.metrics.bootstrap import DEFAULT_SEED, Interval, bootstrap_corpus
from tokenloom.metrics.text import BLEU_TOKENIZERS, clipped_overlap, counts, ngram_counts, ngram_keys

SMOOTH_DEFAULTS = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}
_LOG_ZERO = -9999999999  # sacrebleu's floor for log(0)


@dataclass(frozen=True)
class BleuOptions:
    """Every option that changes a BLEU number; validated on construction."""

    tokenize: str = "13a"
    lowercase: bool = False
    smooth_method: str = "exp"
    smooth_value: float | None = None
    max_ngram_order: int = 4
    use_effective_order: bool = False

    def __post_init__(self):
        check_choice("tokenize", self.tokenize, list(BLEU_TOKENIZERS))
        check_choice("smooth_method", self.smooth_method, list(SMOOTH_DEFAULTS))
        if not isinstance(self.max_ngram_order, int) or self.max_ngram_order < 1:
            raise InvalidArgument(f"max_ngram_order must be an integer >= 1; got {self.max_ngram_order!r}")
        object.__setattr__(self, "_signatures", {})  # nrefs -> signature string, filled on demand

    @property
    def smoothing(self) -> float | None:
        """The smoothing value in force (the method's default when none was given)."""
        return SMOOTH_DEFAULTS[self.smooth_method] if self.smooth_value is None else self.smooth_value

    def signature(self, nrefs) -> str:
        """'nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:...' (cached)."""
        if nrefs in self._signatures:
            return self._signatures[nrefs]
        smooth = self.smooth_method
        if SMOOTH_DEFAULTS[smooth] is not None:
            smooth += f"[{self.smoothing:.2f}]"
        fields = {"nrefs": nrefs, "case": "lc" if self.lowercase else "mixed",
                  "eff": self.use_effective_order, "tok": self.tokenize, "smooth": smooth}
        if self.max_ngram_order != 4:
            fields["order"] = self.max_ngram_order
        self._signatures[nrefs] = format_signature(fields)
        return self._signatures[nrefs]


@dataclass(frozen=True)
class BleuResult:
    """A BLEU score (0-100) with its parts. `clipped[n-1]` counts the order-n
    hypothesis n-grams that occur in a reference but were cut by clipping; it is
    filled only when asked for (`verbose=True`)."""

    score: float
    precisions: tuple[float, ...]
    counts: tuple[int, ...]
    totals: tuple[int, ...]
    bp: float
    ratio: float
    hyp_len: int
    ref_len: int
    signature: str
    clipped: tuple[int, ...] | None = None
    interval: Interval | None = None

    def __str__(self) -> str:
        """'BLEU = 20.80 54.4/26.6/14.9/8.7 (BP = 1.000 ratio = 1.000 hyp_len = 10 ref_len = 10)'."""
        prec = "/".join(f"{p:.1f}" for p in self.precisions)
        return (f"BLEU = {self.score:.2f} {prec} (BP = {self.bp:.3f} ratio = {self.ratio:.3f} "
                f"hyp_len = {self.hyp_len:d} ref_len = {self.ref_len:d})")

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (lists instead of tuples, the interval as a dict)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def explain(self) -> str:
        """The breakdown of the formula: per-order precision, what clipping removed, BP."""
        lines = [str(self)]
        for n, (c, t, p) in enumerate(zip(self.counts, self.totals, self.precisions), start=1):
            cut = "" if self.clipped is None else f", clipping removed {self.clipped[n - 1]}"
            lines.append(f"  p_{n} = {c}/{t} matched = {p:.2f}%{cut}")
        rule = "c > r, so BP = 1" if self.hyp_len > self.ref_len else "c <= r, so BP = exp(1 - r/c)"
        lines.append(f"  c = {self.hyp_len}, r = {self.ref_len}: {rule} = {self.bp:.4f}")
        lines.append(f"  {self.signature}")
        return "\n".join(lines)


def _tokenizer(options: BleuOptions):
    """line -> tokens: lowercase (if asked), strip trailing whitespace, tokenize."""
    tokenize = BLEU_TOKENIZERS[options.tokenize]
    if options.lowercase:
        return lambda line: tokenize(line.lower().rstrip())
    return lambda line: tokenize(line.rstrip())


@lru_cache(maxsize=64)
def _setup(*args) -> tuple[BleuOptions, object]:
    """Validated options and their tokenizer, built once per distinct set of arguments."""
    options = BleuOptions(*args)
    return options, _tokenizer(options)


def _reference_info(refs: Sequence[Sequence[str]], max_order: int):
    """(distinct n-grams per order as `ngram_keys` gives them, what to count clipped
    matches against, lengths). With one reference that is its tokens; with several,
    one Counter per order holding each n-gram as often as the reference that has
    it most often."""
    if len(refs) == 1:
        return ngram_keys(refs[0], max_order), [refs[0]] * max_order, [len(refs[0])]
    merged = []
    for n in range(1, max_order + 1):
        counts = Counter()
        for ref in refs:
            for gram, count in ngram_counts(ref, n).items():
                if count > counts[gram]:
                    counts[gram] = count
        merged.append(counts)
    keys = [merged[0]] + [set(counts) for counts in merged[1:]]
    return keys, merged, [len(ref) for ref in refs]


def closest_ref_len(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """The reference length nearest to the hypothesis length; ties go to the shorter.
    hyp_len=5, ref_lens=[3, 7, 6] -> 6; ref_lens=[4, 6] -> 4."""
    return min(ref_lens, key=lambda r: (abs(hyp_len - r), r))


def _unigram_matches(hyp_counts: dict, ref_counts: dict, hyp_len: int, ref_distinct: bool) -> int:
    """Clipped unigram matches: Σ_w min(c_hyp(w), c_ref(w)) over the shared words.
    When either side repeats no word (`ref_distinct` says so for the reference),
    every shared word counts once."""
    common = hyp_counts.keys() & ref_counts.keys()
    if ref_distinct or len(hyp_counts) == hyp_len:
        return len(common)
    return sum(map(min, map(hyp_counts.__getitem__, common), map(ref_counts.__getitem__, common)))


def segment_statistics(hyp, ref_info, max_order: int, with_clipping: bool = False) -> list[int]:
    """[hyp_len, ref_len, matches_1..N, totals_1..N] (+ clipped_1..N when asked)."""
    ref_keys, ref_counts, ref_lens = ref_info
    hyp_len = len(hyp)
    if len(ref_lens) == 1:
        ref_len = ref_lens[0]
        ref_distinct = len(ref_keys[0]) == ref_len  # one reference that repeats no word
    else:
        ref_len = closest_ref_len(hyp_len, ref_lens)
        ref_distinct = False
    totals = [hyp_len - n if hyp_len > n else 0 for n in range(max_order)]
    hyp_keys = ngram_keys(hyp, max_order)
    matches = [_unigram_matches(hyp_keys[0], ref_keys[0], hyp_len, ref_distinct)]
    for n in range(2, max_order + 1):
        keys = hyp_keys[n - 1]
        if len(keys) == totals[n - 1]:  # no repeated hypothesis n-gram: no clipping
            matches.append(len(keys & ref_keys[n - 1]))
        else:
            matches.append(clipped_overlap(hyp, keys, ref_counts[n - 1], ref_keys[n - 1], n))
    if not with_clipping:
        return [hyp_len, ref_len, *matches, *totals]
    unclipped = [sum(map(hyp_keys[0].__getitem__, hyp_keys[0].keys() & ref_keys[0].keys()))]
    for n in range(2, max_order + 1):
        counts = ngram_counts(hyp, n)
        unclipped.append(sum(counts[gram] for gram in hyp_keys[n - 1] & ref_keys[n - 1]))
    return [hyp_len, ref_len, *matches, *totals, *(u - m for u, m in zip(unclipped, matches))]


def one_reference_statistics(hyp: Sequence[str], ref: Sequence[str], max_order: int) -> list[int]:
    """`segment_statistics` against a single reference, with less work: a side that
    repeats no n-gram of an order (no word at all, then no n-gram of any order)
    makes every shared n-gram count once, so a single set of the other side's
    n-grams is enough; and an order with no shared n-gram leaves none to the
    next order (a shared n-gram contains two shared (n-1)-grams), so the rest are 0.
    hyp 'a b c', ref 'a b d' -> [3, 3, 2, 1, 0, 0, 3, 2, 1, 0]."""
    hyp_len, ref_len = len(hyp), len(ref)
    totals = [hyp_len - n if hyp_len > n else 0 for n in range(max_order)]
    hyp_counts, ref_counts = counts(hyp), counts(ref)
    common = hyp_counts.keys() & ref_counts.keys()
    distinct = len(hyp_counts) == hyp_len or len(ref_counts) == ref_len
    if distinct:
        matches = [len(common)]
    else:
        matches = [sum(map(min, map(hyp_counts.__getitem__, common), map(ref_counts.__getitem__, common)))]
    hyp_shifts, ref_shifts = [hyp], [ref]  # hyp[i:] for i < n: zip(*shifts) gives the n-grams
    for n in range(2, max_order + 1):
        if not matches[-1]:
            return [hyp_len, ref_len, *matches, *[0] * (max_order - n + 1), *totals]
        hyp_shifts.append(hyp[n - 1 :])
        ref_shifts.append(ref[n - 1 :])
        if distinct:
            matches.append(len(set(zip(*hyp_shifts)).intersection(zip(*ref_shifts))))
            continue
        hyp_keys = set(zip(*hyp_shifts))
        if len(hyp_keys) == totals[n - 1]:
            matches.append(len(hyp_keys.intersection(zip(*ref_shifts))))
            continue
        ref_keys = set(zip(*ref_shifts))
        if len(ref_keys) == max(ref_len - n + 1, 0):
            matches.append(len(hyp_keys & ref_keys))
            continue
        hyp_grams, ref_grams = counts(zip(*hyp_shifts)), counts(zip(*ref_shifts))
        shared = hyp_keys & ref_keys
        matches.append(sum(map(min, map(hyp_grams.__getitem__, shared), map(ref_grams.__getitem__, shared))))
    return [hyp_len, ref_len, *matches, *totals]


def bleu_statistics(hypotheses, references, options: BleuOptions, with_clipping=False):
    """Sufficient statistics of every segment (see `segment_statistics`), and nrefs."""
    per_segment = transpose_references(hypotheses, references)
    tokenize, order = _tokenizer(options), options.max_ngram_order
    stats = []
    for hyp, refs in zip(hypotheses, per_segment):
        if not refs:
            raise InvalidArgument("every segment needs at least one reference")
        if len(refs) == 1 and not with_clipping:
            stats.append(one_reference_statistics(tokenize(hyp), tokenize(refs[0]), order))
            continue
        info = _reference_info([tokenize(ref) for ref in refs], order)
        stats.append(segment_statistics(tokenize(hyp), info, order, with_clipping))
    return stats, count_references(per_segment)


def _precisions(matches, totals, options: BleuOptions):
    """Smoothed precisions in percent, and the number of orders the mean runs over."""
    method, value, order = options.smooth_method, options.smoothing, options.max_ngram_order
    if method != "add-k" and 0 not in totals and 0 not in matches:  # nothing to smooth
        return [100.0 * m / t for m, t in zip(matches, totals)], order
    precisions = [0.0] * order
    halvings, effective = 1.0, order
    for n in range(1, order + 1):
        matched, total = matches[n - 1], totals[n - 1]
        if method == "add-k" and n > 1:
            matched, total = matched + value, total + value
        if total == 0:
            break
        if options.use_effective_order:
            effective = n
        if matched != 0:
            precisions[n - 1] = 100.0 * matched / total
        elif method == "exp":
            halvings *= 2
            precisions[n - 1] = 100.0 / (halvings * total)
        elif method == "floor":
            precisions[n - 1] = 100.0 * value / total
    return precisions, effective


def bleu_from_statistics(stats: Sequence[int], options: BleuOptions, nrefs=1) -> BleuResult:
    """The BLEU result of summed statistics ([hyp_len, ref_len, matches, totals, ...])."""
    order = options.max_ngram_order
    hyp_len, ref_len = int(stats[0]), int(stats[1])
    matches, totals = tuple(stats[2 : 2 + order]), tuple(stats[2 + order : 2 + 2 * order])
    clipped = tuple(stats[2 + 2 * order :]) or None
    bp = 1.0
    if hyp_len < ref_len:
        bp = math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0
    if any(matches):
        precisions, effective = _precisions(matches, totals, options)
        used = precisions[:effective] if effective < order else precisions
        logs = sum(map(math.log, used)) if 0.0 not in used else sum(math.log(p) if p else _LOG_ZERO for p in used)
        score = bp * math.exp(logs / effective)
    else:
        precisions, score = [0.0] * order, 0.0
    return BleuResult(score=score, precisions=tuple(precisions), counts=matches,
                      totals=totals, bp=bp, ratio=hyp_len / ref_len if ref_len else 0,
                      hyp_len=hyp_len, ref_len=ref_len, signature=options.signature(nrefs),
                      clipped=clipped)


def sum_statistics(stats: Sequence[Sequence[int]]) -> list[int]:
    """Column sums of per-segment statistics (the corpus's sufficient statistics)."""
    if not stats:
        raise InvalidArgument("BLEU needs at least one segment")
    return [sum(column) for column in zip(*stats)]


@register("bleu")
def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], *,
                tokenize="13a", lowercase=False, smooth_method="exp", smooth_value=None,
                max_ngram_order=4, use_effective_order=False, verbose=False,
                n_bootstrap=0, seed=DEFAULT_SEED) -> BleuResult:
    """Corpus BLEU, sacrebleu's `corpus_bleu` argument shapes: `references` is a list
    of reference streams, each as long as `hypotheses` (None marks a missing one).
    `n_bootstrap=B` adds a 95% bootstrap interval of the score (`result.interval`).

    >>> corpus_bleu(["the cat sat on the mat"], [["the cat sat on the mat"]]).score
    100.00000000000004
    """
    options = _setup(tokenize, lowercase, smooth_method, smooth_value, max_ngram_order, use_effective_order)[0]
    stats, nrefs = bleu_statistics(hypotheses, references, options, with_clipping=verbose)
    result = bleu_from_statistics(sum_statistics(stats), options, nrefs)
    if n_bootstrap:
        interval = bootstrap_corpus(stats, lambda row: bleu_from_statistics(row, options).score,
                                    n_bootstrap, seed=seed)
        result = replace(result, interval=interval)
    return result


def sentence_bleu(hypothesis: str, references: Sequence[str], *, tokenize="13a",
                  lowercase=False, smooth_method="exp", smooth_value=None,
                  max_ngram_order=4, use_effective_order=True, verbose=False) -> BleuResult:
    """BLEU of one hypothesis against its references (a list of strings); effective
    order is on by default, as in sacrebleu's `sentence_bleu`."""
    if not isinstance(hypothesis, str) or isinstance(references, str):
        raise InvalidArgument("sentence_bleu takes one hypothesis string and a list of references")
    options, tokenizer = _setup(tokenize, lowercase, smooth_method, smooth_value, max_ngram_order,
                                use_effective_order)
    refs = references if None not in references else [ref for ref in references if ref is not None]
    if not refs:
        raise InvalidArgument("sentence_bleu needs at least one reference")
    if len(refs) == 1 and not verbose:
        stats = one_reference_statistics(tokenizer(hypothesis), tokenizer(refs[0]), max_ngram_order)
    else:
        info = _reference_info([tokenizer(ref) for ref in refs], max_ngram_order)
        stats = segment_statistics(tokenizer(hypothesis), info, max_ngram_order, verbose)
    return bleu_from_statistics(stats, options, len(refs))


def sentence_bleu_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                         **options) -> list[BleuResult]:
    """Sentence BLEU of every segment; `references` in the corpus layout (streams)."""
    per_segment = transpose_references(hypotheses, references)
    return [sentence_bleu(h, refs, **options) for h, refs in zip(hypotheses, per_segment)]
