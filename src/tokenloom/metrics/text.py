"""Tokenizers and n-gram counting shared by the metrics.

Every tokenizer here reproduces a reference tool character for character:

* BLEU's `13a` (mteval-v13a.pl, as sacrebleu implements it), `intl` (mteval-v14),
  `char` and `none`; each turns a line into a tuple of tokens.
* ROUGE's default tokenizer (rouge-score 0.1.2): lowercase, keep only ASCII
  letters and digits, optionally Porter-stem words longer than 3 characters.

Speed comes from caching per unique *word*: a line is split on whitespace and
each word is tokenized once per process. That is exact for `13a` because its
rules only ever look at two neighbouring characters, and whitespace on either
side of a word behaves like the space that pads the line (see `tokenize_13a`).

    >>> tokenize_13a("Hello, world.")
    ('Hello', ',', 'world', '.')
    >>> rouge_tokens("The cats' toys!", stem=True)
    ('the', 'cat', 'toy')
"""

import re
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import chain

try:
    from collections import _count_elements  # CPython's C counting loop behind Counter
except ImportError:  # pragma: no cover - other Python implementations

    def _count_elements(mapping, iterable):
        for element in iterable:
            mapping[element] = mapping.get(element, 0) + 1

# ----------------------------------------------------------------- BLEU: 13a
# Rule 1 separates ASCII punctuation and symbols: { | } ~ [ \ ] ^ _ ` space ! " # $ % &
# ( ) * + : ; < = > ? @ /. Rules 2-3 separate '.' and ',' unless they sit between
# digits; rule 4 separates '-' after a digit.
_13A_RULES = (
    (re.compile(r"([{-~\[-` -&(-+:-@/])"), r" \1 "),
    (re.compile(r"([^0-9])([.,])"), r"\1 \2 "),
    (re.compile(r"([.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
)
_SPLIT_AT_END = frozenset('{|}~[\\]^_`!"#$%&()*+:;<=>?@/.,')  # rule 1's class, '.' and ','
_WORD_CACHE_LIMIT = 1 << 20
_13a_cache: dict[str, tuple[str, ...]] = {}


def _tokenize_13a_word(word: str) -> tuple[str, ...]:
    """Apply the four 13a rules to one space-padded word: 'U.S.,' -> ('U.S', '.', ',').
    Fast paths: a word of letters and digits (or a single character) has nothing to
    split; letters and digits followed by one mark that rule 1, 2 or 3 splits off
    give exactly two tokens ('end.' -> ('end', '.'), '2019,' -> ('2019', ','))."""
    if word.isalnum() or len(word) == 1:
        return (word,)
    if word[-1] in _SPLIT_AT_END and word[:-1].isalnum():
        return (word[:-1], word[-1])
    text = f" {word} "
    for pattern, replacement in _13A_RULES:
        text = pattern.sub(replacement, text)
    return tuple(text.split())


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
    words = _normalize_13a(line).split()
    try:
        return tuple(chain.from_iterable(map(_13a_cache.__getitem__, words)))
    except KeyError:
        if len(_13a_cache) > _WORD_CACHE_LIMIT:
            _13a_cache.clear()
        for word in words:
            if word not in _13a_cache:
                _13a_cache[word] = _tokenize_13a_word(word)
        return tuple(chain.from_iterable(map(_13a_cache.__getitem__, words)))


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
# byte -> itself for a-z and 0-9, else a space
_ASCII_WORD_BYTES = bytes(b if 48 <= b <= 57 or 97 <= b <= 122 else 32 for b in range(256))
_UNICODE_WORD = re.compile(r"[^\W_]+")
_stemmer = None
_stem_cache: dict[str, str] = {}


def porter_stem(word: str) -> str:
    """nltk's Porter stemmer in its default (NLTK_EXTENSIONS) mode, cached per word.

    rouge-score uses exactly this stemmer; the cache makes it cost one dict
    lookup per repeated word. 'running' -> 'run', 'agreed' -> 'agre'.
    """
    stem = _stem_cache.get(word)
    if stem is None:
        global _stemmer
        if _stemmer is None:
            from nltk.stem.porter import PorterStemmer

            _stemmer = PorterStemmer()
        if len(_stem_cache) > _WORD_CACHE_LIMIT:
            _stem_cache.clear()
        stem = _stem_cache[word] = _stemmer.stem(word)
    return stem


def _stem_words(words: list[str], ascii_only: bool) -> tuple[str, ...]:
    """Stem words longer than 3 characters, keep the rest, drop any stem that is
    empty (or not ASCII alphanumeric: rouge-score's final validity filter)."""
    out = []
    cache = _stem_cache
    for word in words:
        if len(word) > 3:
            stem = cache.get(word)
            word = stem if stem is not None else porter_stem(word)
            if not word or (ascii_only and not (word.isascii() and word.isalnum())):
                continue
        out.append(word)
    return tuple(out)


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
    return _stem_words(words, not unicode) if stem else tuple(words)


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
    """{n-gram: count}, counted by the C loop behind Counter (without its checks)."""
    counts: dict = {}
    _count_elements(counts, grams)
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
