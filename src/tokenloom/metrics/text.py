"""Tokenizers and n-gram counting shared by the metrics.

Every tokenizer here reproduces a reference tool character for character:

* BLEU's `13a` (mteval-v13a.pl, as sacrebleu implements it), `intl` (mteval-v14),
  `char` and `none`; each turns a line into a tuple of tokens.
* ROUGE's default tokenizer (rouge-score 0.1.2): lowercase, keep only ASCII
  letters and digits, optionally Porter-stem words longer than 3 characters.

Speed comes from caching per unique *word*: a line is split on whitespace and
each word is tokenized (or stemmed) once per process, until `clear_word_caches()`.
That is exact for `13a` because its rules only ever look at two neighbouring
characters, and whitespace on either side of a word behaves like the space that
pads the line (see `tokenize_13a`).

    >>> tokenize_13a("Hello, world.")
    ('Hello', ',', 'world', '.')
    >>> rouge_tokens("The cats' toys!", stem=True)
    ('the', 'cat', 'toy')
"""

import re
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import chain

from tokenloom.metrics.porter import porter_stem
from tokenloom.private_apis import counting_loop

# ----------------------------------------------------------------- BLEU: 13a
# Rule 1 separates ASCII punctuation and symbols: { | } ~ [ \ ] ^ _ ` space ! " # $ % &
# ( ) * + : ; < = > ? @ / (within one word there is no space to separate). Rules 2-3
# separate '.' and ',' unless they sit between digits; rule 4 separates '-' after a digit.
_13A_RULE1_CHARS = '{|}~[\\]^_`!"#$%&()*+:;<=>?@/'
# rule 1 matches one character at a time, so a translation table applies it exactly
_13A_RULE1 = str.maketrans({c: f" {c} " for c in _13A_RULE1_CHARS})
_13A_PERIOD_COMMA = (
    (re.compile(r"([^0-9])([.,])"), r"\1 \2 "),
    (re.compile(r"([.,])([^0-9])"), r" \1 \2"),
)
_13A_DASH = re.compile(r"([0-9])(-)")
_SPLIT_AT_END = frozenset(_13A_RULE1_CHARS + ".,")  # rule 1's class, '.' and ','
_WORD_CACHE_LIMIT = 1 << 20


class _WordCache(dict):
    """word -> `compute(word)`, computed on the first lookup of a word: `__missing__`
    keeps `cache[word]` a plain C dict lookup for known words, with no exception
    and no second pass for new ones. Emptied when it outgrows `_WORD_CACHE_LIMIT`."""

    def __init__(self, compute):
        super().__init__()
        self.compute = compute

    def __missing__(self, word):
        if len(self) > _WORD_CACHE_LIMIT:
            self.clear()
        value = self[word] = self.compute(word)
        return value


def _tokenize_13a_word(word: str) -> tuple[str, ...]:
    """Apply the four 13a rules to one space-padded word: 'U.S.,' -> ('U.S', '.', ',').
    Fast paths: a word of letters and digits (or a single character) has nothing to
    split; letters and digits followed by one mark that rule 1, 2 or 3 splits off
    give exactly two tokens ('end.' -> ('end', '.'), '2019,' -> ('2019', ','))."""
    if word.isalnum() or len(word) == 1:
        return (word,)
    if word[-1] in _SPLIT_AT_END and word[:-1].isalnum():
        return (word[:-1], word[-1])
    text = f" {word} ".translate(_13A_RULE1)
    if "." in text or "," in text:
        for pattern, replacement in _13A_PERIOD_COMMA:
            text = pattern.sub(replacement, text)
    if "-" in text:
        text = _13A_DASH.sub(r"\1 \2 ", text)
    return tuple(text.split())


_13a_cache = _WordCache(_tokenize_13a_word)


def _normalize_13a(line: str) -> str:
    """The language-independent part of 13a: drop <skipped>, join hyphenated line
    breaks, turn newlines into spaces, unescape four XML entities."""
    if "<skipped>" in line:
        line = line.replace("<skipped>", "")
    if "\n" in line:
        line = line.replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&")
        line = line.replace("&lt;", "<").replace("&gt;", ">")
    return line


def tokenize_13a(line: str) -> tuple[str, ...]:
    """mteval-v13a tokenization, word by word with a per-word cache.

    Whole-line and per-word processing agree because every rule matches at most
    two adjacent characters and no match can consume whitespace that a later
    match on the other side of it would need: rule 2 ends in '.'/',', rule 3
    starts with one, rule 4 has no whitespace at all.

    >>> tokenize_13a("It costs $1,000.50-2 (approx.).")
    ('It', 'costs', '$', '1,000.50', '-', '2', '(', 'approx', '.', ')', '.')
    """
    return tuple(chain.from_iterable(map(_13a_cache.__getitem__, _normalize_13a(line).split())))


# ---------------------------------------------------------------- BLEU: intl
_intl_rules = None


def tokenize_intl(line: str) -> tuple[str, ...]:
    """mteval-v14 'international' tokenization: split Unicode punctuation unless it
    sits between digits, and split every Unicode symbol. Uses the `regex` package,
    whose Unicode tables sacrebleu also uses. Quirk kept on purpose: a number
    followed by a final '.' keeps its dot ('in 2019.' -> ('in', '2019.')).
    """
    global _intl_rules
    if _intl_rules is None:
        import regex

        _intl_rules = (
            (regex.compile(r"(\P{N})(\p{P})"), r"\1 \2 "),
            (regex.compile(r"(\p{P})(\P{N})"), r" \1 \2"),
            (regex.compile(r"(\p{S})"), r" \1 "),
        )
    for pattern, replacement in _intl_rules:
        line = pattern.sub(replacement, line)
    return tuple(line.split())


def tokenize_char(line: str) -> tuple[str, ...]:
    """Every non-whitespace character is a token: 'ab c' -> ('a', 'b', 'c')."""
    return tuple(" ".join(line).split())


def tokenize_none(line: str) -> tuple[str, ...]:
    """Whitespace splitting only: 'a, b' -> ('a,', 'b')."""
    return tuple(line.split())


BLEU_TOKENIZERS: dict[str, Callable[[str], tuple[str, ...]]] = {
    "13a": tokenize_13a,
    "intl": tokenize_intl,
    "char": tokenize_char,
    "none": tokenize_none,
}


# ------------------------------------------------------------------- ROUGE
_ASCII_WORD = re.compile(r"[a-z0-9]+")
# byte -> itself for a-z and 0-9, else a space; the second table keeps newlines
_ASCII_WORD_BYTES = bytes(b if 48 <= b <= 57 or 97 <= b <= 122 else 32 for b in range(256))
_ASCII_LINE_BYTES = bytes(b if 48 <= b <= 57 or 97 <= b <= 122 or b == 10 else 32 for b in range(256))
_UNICODE_WORD = re.compile(r"[^\W_]+")


def _stem_entry(word: str, ascii_only: bool) -> tuple[str, ...]:
    """What one word contributes to stemmed ROUGE tokens: itself if it has at most
    3 characters, else its stem; nothing if the stem is empty or (rouge-score's
    final validity filter) not ASCII letters and digits."""
    if len(word) <= 3:
        return (word,)
    stem = porter_stem(word)
    if not stem or (ascii_only and not (stem.isascii() and stem.isalnum())):
        return ()
    return (stem,)


_stem_cache = _WordCache(lambda word: _stem_entry(word, True))
_unicode_stem_cache = _WordCache(lambda word: _stem_entry(word, False))


def clear_word_caches() -> None:
    """Forget every per-word result (13a tokens, stems): the next call starts cold."""
    for cache in (_13a_cache, _stem_cache, _unicode_stem_cache):
        cache.clear()


def rouge_tokens(text: str, stem: bool = False, unicode: bool = False) -> tuple[str, ...]:
    """ROUGE tokens of a text, exactly as rouge-score 0.1.2 makes them.

    Lowercase, keep runs of [a-z0-9] (everything else, non-ASCII letters included,
    separates tokens and disappears), Porter-stem tokens longer than 3 characters
    when `stem`. `unicode=True` keeps runs of any Unicode letter or digit instead:
    useful for non-English text, which rouge-score scores 0, but NOT rouge-score
    compatible.

    >>> rouge_tokens("Größe: 3-D printers!", stem=True)
    ('gr', 'e', '3', 'd', 'printer')
    >>> rouge_tokens("Größe: 3-D", unicode=True)
    ('größe', '3', 'd')
    """
    text = text.lower()
    if unicode:
        words = _UNICODE_WORD.findall(text)
    elif text.isascii():  # same tokens as the regex, twice as fast: bytes.translate + split
        words = text.encode("ascii").translate(_ASCII_WORD_BYTES).decode("ascii").split()
    else:
        words = _ASCII_WORD.findall(text)
    if not stem:
        return tuple(words)
    cache = _unicode_stem_cache if unicode else _stem_cache
    return tuple(chain.from_iterable(map(cache.__getitem__, words)))


def rouge_line_tokens(text: str, stem: bool = False, unicode: bool = False) -> list[tuple[str, ...]]:
    """`rouge_tokens` of every non-empty line of a text (ROUGE-Lsum's sentences).
    A line with no word in it still counts: 'A b\n\n!' -> [('a', 'b'), ()].
    ASCII text is mapped in one pass, newlines kept, and split afterwards."""
    lowered = text.lower()
    if unicode or not lowered.isascii():
        return [rouge_tokens(line, stem, unicode) for line in text.split("\n") if line]
    lines = lowered.encode("ascii").translate(_ASCII_LINE_BYTES).decode("ascii").split("\n")
    if not stem:
        return [tuple(line.split()) for line in lines if line]
    get = _stem_cache.__getitem__
    return [tuple(chain.from_iterable(map(get, line.split()))) for line in lines if line]


# ------------------------------------------------------------------ n-grams
def ngram_iter(tokens: Sequence[str], n: int):
    """The n-grams of one order in order of occurrence: unigrams are the tokens
    themselves, longer n-grams tuples built by zip (in C).
    ('a', 'b', 'a'), n=2 -> ('a', 'b'), ('b', 'a')."""
    if n == 1:
        return iter(tokens)
    if n == 2:
        return zip(tokens, tokens[1:])
    if n == 3:
        return zip(tokens, tokens[1:], tokens[2:])
    return zip(*(tokens[i:] for i in range(n)))


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams of one order (keys as in `ngram_iter`):
    ('a', 'b', 'a', 'b'), n=2 -> {('a','b'): 2, ('b','a'): 1}."""
    return Counter(ngram_iter(tokens, n))


def ngram_keys(tokens: Sequence[str], max_order: int) -> list:
    """The distinct n-grams of every order 1..max_order: for unigrams a dict of
    counts (words repeat often, so they are counted once here), for longer
    n-grams a set. BLEU's default of 4 orders is spelled out: it is the hot path.
    ('a', 'b', 'a'), 2 -> [{'a': 2, 'b': 1}, {('a', 'b'), ('b', 'a')}]."""
    if max_order == 4:
        t1, t2, t3 = tokens[1:], tokens[2:], tokens[3:]
        return [counts(tokens), set(zip(tokens, t1)), set(zip(tokens, t1, t2)), set(zip(tokens, t1, t2, t3))]
    return [counts(tokens)] + [set(ngram_iter(tokens, n)) for n in range(2, max_order + 1)]


def counts(grams) -> dict:
    """{n-gram: count}, counted by the C loop behind Counter (without its checks) where there is one."""
    counts: dict = {}
    counting_loop()(counts, grams)
    return counts


def clipped_overlap(hyp: Sequence[str], hyp_keys: set, ref, ref_keys: set, n: int) -> int:
    """Σ_g min(c_hyp(g), c_ref(g)) over the order-n n-grams the two sides share.

    `hyp` and `ref` are token sequences (`ref` may instead be a Counter of its
    n-grams). Short cut: when either side has no repeated n-gram, every shared
    n-gram counts once, so the size of the key intersection is the answer.
    ['a', 'a', 'b'] vs ['a', 'b', 'b'], n=1 -> min(2, 1) + min(1, 2) = 2.
    """
    common = hyp_keys & ref_keys
    if not common or len(hyp_keys) == len(hyp) - n + 1:
        return len(common)
    if isinstance(ref, Counter):
        ref_counts = ref
    elif len(ref_keys) == len(ref) - n + 1:
        return len(common)
    else:
        ref_counts = counts(ngram_iter(ref, n))
    hyp_counts = counts(ngram_iter(hyp, n))
    return sum(map(min, map(hyp_counts.__getitem__, common), map(ref_counts.__getitem__, common)))


def char_ngram_counts(line: str, n: int) -> Counter:
    """Character n-grams of a string: 'abab', n=2 -> {'ab': 2, 'ba': 1}."""
    return Counter([line[i : i + n] for i in range(len(line) - n + 1)])
