"""chrF (Popović, 2015) and chrF++ (2017), number for number with sacrebleu 2.x.

Character n-grams of orders 1..6 (whitespace removed), optionally word n-grams
(chrF++: word order 2). For each order n the segment statistics are
[hyp n-grams, ref n-grams, matched n-grams] (matches clipped as in BLEU); the
corpus sums them. With P and R averaged over the orders where both sides have
n-grams (sacrebleu >= 2.0's effective order),

    chrF_β = 100 · (1 + β²) · P · R / (β² · P + R),   β = 2 (recall counts 4× as much)

Worked example: hyp 'ab', ref 'abc', char order 2: order 1 has P = 2/2, R = 2/3;
order 2 has P = 1/1, R = 1/2; P = 1, R = 7/12, chrF2 = 100·5·(7/12)/(4 + 7/12) = 63.64.
With several references a segment keeps the statistics of the one with the best F.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from tokenloom.errors import InvalidArgument
from tokenloom.metrics.base import count_references, format_signature, register, transpose_references
from tokenloom.metrics.text import char_ngram_counts, ngram_counts

_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_EPS = 1e-16


@dataclass(frozen=True)
class ChrfOptions:
    """Every option that changes a chrF number (sacrebleu's defaults)."""

    char_order: int = 6
    word_order: int = 0
    beta: int = 2
    lowercase: bool = False
    whitespace: bool = False
    eps_smoothing: bool = False

    def __post_init__(self):
        if self.char_order < 1 or self.word_order < 0 or self.beta < 0:
            raise InvalidArgument("chrF needs char_order >= 1, word_order >= 0 and beta >= 0")

    def signature(self, nrefs) -> str:
        return format_signature({
            "nrefs": nrefs, "case": "lc" if self.lowercase else "mixed",
            "eff": not self.eps_smoothing, "nc": self.char_order, "nw": self.word_order,
            "space": self.whitespace,
        })


@dataclass(frozen=True)
class ChrfResult:
    """A chrF score (0-100), its name (chrF2, chrF2++), statistics and signature."""

    score: float
    name: str
    statistics: tuple[int, ...]
    signature: str

    def __str__(self) -> str:
        return f"{self.name} = {self.score:.2f}"

    def to_dict(self) -> dict:
        return {"name": self.name, "score": self.score, "signature": self.signature}


def _split_punctuation(line: str) -> list[str]:
    """chrF++'s word splitting: one leading or trailing ASCII punctuation mark is
    split off each word: 'hi!' -> ['hi', '!'], '(hi)' -> ['(hi', ')']."""
    words = []
    for word in line.split():
        if len(word) > 1 and word[-1] in _PUNCTUATION:
            words += [word[:-1], word[-1]]
        elif len(word) > 1 and word[0] in _PUNCTUATION:
            words += [word[0], word[1:]]
        else:
            words.append(word)
    return words


def _ngrams(line: str, options: ChrfOptions) -> list:
    chars = line if options.whitespace else "".join(line.split())
    grams = [char_ngram_counts(chars, n) for n in range(1, options.char_order + 1)]
    if options.word_order:
        words = _split_punctuation(line)
        grams += [ngram_counts(words, n) for n in range(1, options.word_order + 1)]
    return grams


def _match_statistics(hyp_grams, ref_grams) -> list[int]:
    stats = []
    for hyp, ref in zip(hyp_grams, ref_grams):
        common = hyp.keys() & ref.keys()
        matched = sum(map(min, map(hyp.get, common), map(ref.get, common)))
        hyp_total = sum(hyp.values()) if ref else 0
        stats += [hyp_total, sum(ref.values()), matched]
    return stats


def chrf_f_score(stats: Sequence[int], options: ChrfOptions) -> float:
    """chrF from [hyp, ref, match] triples per order; see the module docstring."""
    factor = options.beta**2
    orders = len(stats) // 3
    eps_score, precision, recall, effective = 0.0, 0.0, 0.0, 0
    for i in range(orders):
        n_hyp, n_ref, n_match = stats[3 * i : 3 * i + 3]
        prec = n_match / n_hyp if n_hyp > 0 else _EPS
        rec = n_match / n_ref if n_ref > 0 else _EPS
        denom = factor * prec + rec
        eps_score += ((1 + factor) * prec * rec / denom) if denom > 0 else _EPS
        if n_hyp > 0 and n_ref > 0:
            precision, recall, effective = precision + prec, recall + rec, effective + 1
    if options.eps_smoothing:
        return 100 * eps_score / orders
    if effective == 0:
        return 0.0
    precision, recall = precision / effective, recall / effective
    if not precision + recall:
        return 0.0
    return 100 * ((1 + factor) * precision * recall) / (factor * precision + recall)


def chrf_statistics(hypotheses, references, options: ChrfOptions):
    """Per-segment statistics (best reference by F per segment), and nrefs."""
    per_segment = transpose_references(hypotheses, references)
    prepare = str.lower if options.lowercase else str
    stats = []
    for hyp, refs in zip(hypotheses, per_segment):
        hyp_grams = _ngrams(prepare(hyp), options)
        best, best_f = None, -1.0
        for ref in refs:
            candidate = _match_statistics(hyp_grams, _ngrams(prepare(ref), options))
            f_score = chrf_f_score(candidate, options)
            if f_score > best_f:
                best, best_f = candidate, f_score
        if best is None:
            raise InvalidArgument("every segment needs at least one reference")
        stats.append(best)
    return stats, count_references(per_segment)


def chrf_from_statistics(stats: Sequence[int], options: ChrfOptions, nrefs=1) -> ChrfResult:
    name = f"chrF{options.beta}" + "+" * options.word_order
    return ChrfResult(chrf_f_score(stats, options), name, tuple(stats), options.signature(nrefs))


@register("chrf")
def corpus_chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]], *,
                char_order=6, word_order=0, beta=2, lowercase=False,
                remove_whitespace=True, eps_smoothing=False) -> ChrfResult:
    """Corpus chrF with sacrebleu's defaults and argument shapes (`references` is a
    list of reference streams). `word_order=2` gives chrF++."""
    options = ChrfOptions(char_order, word_order, beta, lowercase, not remove_whitespace, eps_smoothing)
    stats, nrefs = chrf_statistics(hypotheses, references, options)
    if not stats:
        raise InvalidArgument("chrF needs at least one segment")
    return chrf_from_statistics([sum(column) for column in zip(*stats)], options, nrefs)


def sentence_chrf(hypothesis: str, references: Sequence[str], **options) -> ChrfResult:
    """chrF of one hypothesis against its references (a list of strings)."""
    if not isinstance(hypothesis, str) or isinstance(references, str):
        raise InvalidArgument("sentence_chrf takes one hypothesis string and a list of references")
    return corpus_chrf([hypothesis], [[ref] for ref in references], **options)
