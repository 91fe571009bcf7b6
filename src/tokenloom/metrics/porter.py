"""The Porter stemmer (Porter, 1980) with nltk's NLTK_EXTENSIONS, stem for stem.

rouge-score stems with `nltk.stem.porter.PorterStemmer()` in its default mode, so
that mode is the one ROUGE numbers depend on. This is a second implementation of
it, built for speed: each step finds its candidate rules by the last two letters
of the word instead of trying every suffix in turn, and the consonant/vowel
pattern of a word is computed once per step, since the pattern of a prefix is
the prefix of the pattern.

Definitions (the paper's): a vowel is a, e, i, o, u, or a y that follows a
consonant; every other character is a consonant (a y at the start of a word
included). Writing the word as [C](VC)^m[V], m is its *measure*: 'tree' -> 0,
'trouble' -> 1, 'troubles' -> 2. Conditions: *v* (the stem has a vowel), *d
(it ends in a double consonant), *o (it ends consonant-vowel-consonant, the
last not w, x or y; nltk also accepts a two-letter vowel-consonant stem).

Each step applies the first rule whose suffix the word ends with; when that
rule's condition fails the step leaves the word alone (it does not go on to a
later rule). nltk's additions over the paper, all kept: a small table of
irregular forms ('dying' -> 'die', 'skies' -> 'sky'); words of 1-2 letters are
returned as they are; 'ies'/'ied' on a four-letter word keep the e ('ties' ->
'tie'); 'ied' elsewhere -> 'i'; step 1c turns a final y into i only after a
consonant that is not the whole stem; step 2 has 'bli' -> 'ble' (not 'abli'),
'fulli' -> 'ful', 'logi' -> 'log', and a leading 'alli' -> 'al' that runs step 2
again.

    >>> [porter_stem(w) for w in ["caresses", "ponies", "agreed", "running", "happy", "relational"]]
    ['caress', 'poni', 'agre', 'run', 'happi', 'relat']
"""

_IRREGULAR = {
    "skies": "sky", "sky": "sky", "dying": "die", "lying": "lie", "tying": "tie",
    "news": "news", "innings": "inning", "inning": "inning", "outings": "outing",
    "outing": "outing", "cannings": "canning", "canning": "canning", "howe": "howe",
    "proceed": "proceed", "exceed": "exceed", "succeed": "succeed",
}
_VOWELS = frozenset("aeiou")
# ASCII byte -> 'v' for a vowel letter, 'y' for y (decided by its neighbour), else 'c'
_CV_BYTES = bytes(ord("v") if chr(b) in _VOWELS else ord("y") if b == ord("y") else ord("c")
                  for b in range(256))


def consonant_pattern(word: str) -> str:
    """One letter per character, 'c' for a consonant and 'v' for a vowel:
    'toy' -> 'cvc', 'syzygy' -> 'cvcvcv', 'yes' -> 'cvc'."""
    if word.isascii():
        pattern = word.encode("ascii").translate(_CV_BYTES).decode("ascii")
        if "y" not in pattern:
            return pattern
    else:
        pattern = "".join("v" if ch in _VOWELS else "y" if ch == "y" else "c" for ch in word)
    out = []
    previous = "v"  # a y at the start counts as a consonant
    for kind in pattern:
        if kind == "y":
            kind = "v" if previous == "c" else "c"
        out.append(kind)
        previous = kind
    return "".join(out)


def _measure(pattern: str) -> int:
    """m of [C](VC)^m[V]: the number of vowel-to-consonant changes."""
    return pattern.count("vc")


def _ends_cvc(stem: str, pattern: str) -> bool:
    """*o: consonant-vowel-consonant at the end, the last not w, x or y; or (nltk)
    a stem of exactly two letters, vowel then consonant."""
    if len(pattern) >= 3:
        return pattern.endswith("cvc") and stem[-1] not in "wxy"
    return len(pattern) == 2 and pattern == "vc"


# Rules as (suffix, replacement), grouped by the last two letters of the suffix, each
# group in the paper's order; each step function holds its rules' condition.
def _by_ending(rules):
    table: dict[str, list] = {}
    for rule in rules:
        table.setdefault(rule[0][-2:], []).append(rule)
    return table


_STEP2 = _by_ending([
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"),
    ("izer", "ize"), ("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"),
    ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"), ("ator", "ate"),
    ("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"),
    ("aliti", "al"), ("iviti", "ive"), ("biliti", "ble"), ("fulli", "ful"), ("logi", "log"),
])
_STEP3 = _by_ending([
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"),
    ("ful", ""), ("ness", ""),
])
_STEP4 = _by_ending([
    ("al", ""), ("ance", ""), ("ence", ""), ("er", ""), ("ic", ""), ("able", ""),
    ("ible", ""), ("ant", ""), ("ement", ""), ("ment", ""), ("ent", ""), ("ion", ""),
    ("ou", ""), ("ism", ""), ("ate", ""), ("iti", ""), ("ous", ""), ("ive", ""), ("ize", ""),
])


def _first_rule(word: str, table: dict):
    """The first rule of the step whose suffix ends `word`, or None."""
    candidates = table.get(word[-2:])
    if candidates:
        for rule in candidates:
            if word.endswith(rule[0]):
                return rule
    return None


def _step1a(word: str) -> str:
    if word.endswith("s"):
        if word.endswith("ies") and len(word) == 4:
            return word[:-1]  # 'ties' -> 'tie'
        if word.endswith("sses") or word.endswith("ies"):
            return word[:-2]
        if not word.endswith("ss"):
            return word[:-1]
    return word


def _step1b(word: str) -> str:
    if word.endswith("ied"):
        return word[:-1] if len(word) == 4 else word[:-2]
    if word.endswith("eed"):
        stem = word[:-3]
        return stem + "ee" if _measure(consonant_pattern(stem)) > 0 else word
    if word.endswith("ed"):
        stem = word[:-2]
    elif word.endswith("ing"):
        stem = word[:-3]
    else:
        return word
    pattern = consonant_pattern(stem)
    if "v" not in pattern:
        return word
    if stem.endswith(("at", "bl", "iz")):
        return stem + "e"
    if len(stem) >= 2 and stem[-1] == stem[-2] and pattern[-1] == "c":  # *d
        return stem if stem[-1] in "lsz" else stem[:-1]
    if _measure(pattern) == 1 and _ends_cvc(stem, pattern):
        return stem + "e"
    return stem


def _step1c(word: str) -> str:
    if word.endswith("y") and len(word) > 2 and consonant_pattern(word[:-1])[-1] == "c":
        return word[:-1] + "i"
    return word


def _step2(word: str) -> str:
    if word.endswith("alli") and _measure(consonant_pattern(word[:-4])) > 0:
        return _step2(word[:-2])  # 'alli' -> 'al', then step 2 again
    rule = _first_rule(word, _STEP2)
    if rule is None:
        return word
    suffix, replacement = rule
    stem = word[: -len(suffix)]
    # nltk measures 'logi' words on the stem plus the 'l'
    measured = word[:-3] if suffix == "logi" else stem
    return stem + replacement if _measure(consonant_pattern(measured)) > 0 else word


def _step3(word: str) -> str:
    rule = _first_rule(word, _STEP3)
    if rule is None:
        return word
    stem = word[: -len(rule[0])]
    return stem + rule[1] if _measure(consonant_pattern(stem)) > 0 else word


def _step4(word: str) -> str:
    rule = _first_rule(word, _STEP4)
    if rule is None:
        return word
    stem = word[: -len(rule[0])]
    if _measure(consonant_pattern(stem)) > 1 and (rule[0] != "ion" or stem[-1:] in ("s", "t")):
        return stem
    return word


def _step5(word: str) -> str:
    if word.endswith("e"):
        stem = word[:-1]
        pattern = consonant_pattern(stem)
        m = _measure(pattern)
        if m > 1 or (m == 1 and not _ends_cvc(stem, pattern)):
            word = stem
    if word.endswith("ll") and _measure(consonant_pattern(word[:-1])) > 1:
        return word[:-1]
    return word


def porter_stem(word: str) -> str:
    """The stem nltk's `PorterStemmer().stem(word)` gives (lowercased first)."""
    length = len(word)  # nltk tests the length before lowercasing
    word = word.lower()
    irregular = _IRREGULAR.get(word)
    if irregular is not None:
        return irregular
    if length <= 2:
        return word
    word = _step1c(_step1b(_step1a(word)))
    return _step5(_step4(_step3(_step2(word))))
