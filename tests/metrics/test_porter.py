"""Our Porter stemmer against nltk's PorterStemmer in its default mode, rouge-score's stemmer."""

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.stem.porter import PorterStemmer

from tokenloom.metrics import text
from tokenloom.metrics.porter import consonant_pattern, porter_stem

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
NLTK = PorterStemmer()

# Every suffix some rule looks at, so that random stems meet each rule and its condition.
SUFFIXES = ["sses", "ies", "ss", "s", "eed", "ied", "ed", "ing", "at", "bl", "iz", "y", "ational", "tional",
            "enci", "anci", "izer", "bli", "alli", "entli", "eli", "ousli", "ization", "ation", "ator", "alism",
            "iveness", "fulness", "ousness", "aliti", "iviti", "biliti", "fulli", "logi", "icate", "ative",
            "alize", "iciti", "ical", "ful", "ness", "al", "ance", "ence", "er", "ic", "able", "ible", "ant",
            "ement", "ment", "ent", "sion", "tion", "ion", "ou", "ism", "ate", "iti", "ous", "ive", "ize", "e", "ll"]
stems = st.text(alphabet="aeiouybcdlmnrstwxz", max_size=7)
words = st.tuples(stems, st.sampled_from(SUFFIXES), st.sampled_from(["", "s", "ed", "ing", "ly"])).map("".join)


@settings(max_examples=3000, deadline=None)
@given(word=words)
def test_stem_equals_nltk_on_words_built_from_every_rule_suffix(word):
    assert porter_stem(word) == NLTK.stem(word)


@settings(max_examples=500, deadline=None)
@given(word=st.text(max_size=12))
def test_stem_equals_nltk_on_any_unicode_string(word):
    assert porter_stem(word) == NLTK.stem(word)


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} is absent: the shared data sets give the vocabulary")
def test_stem_equals_nltk_on_every_word_of_the_shared_data():
    vocabulary = set()
    for path in [*DATA.glob("*/*.en"), *DATA.glob("*/*/*.en"), *DATA.glob("*/*.jsonl"), *DATA.glob("*/*.txt")]:
        vocabulary.update(re.findall(r"[^\W_]+", path.read_text("utf-8", errors="replace").lower()))
    assert len(vocabulary) > 20000
    wrong = [w for w in vocabulary if porter_stem(w) != NLTK.stem(w)]
    assert wrong == []


@pytest.mark.parametrize("word, stem", [
    ("caresses", "caress"), ("ponies", "poni"), ("ties", "tie"), ("dies", "die"), ("cried", "cri"),
    ("feed", "feed"), ("agreed", "agre"), ("plastered", "plaster"), ("motoring", "motor"), ("sing", "sing"),
    ("hopping", "hop"), ("falling", "fall"), ("filing", "file"), ("happy", "happi"), ("enjoy", "enjoy"),
    ("relational", "relat"), ("conditional", "condit"), ("generously", "gener"), ("dying", "die"),
    ("skies", "sky"), ("news", "news"), ("proceed", "proceed"), ("controlling", "control"), ("by", "by"),
])
def test_textbook_and_nltk_extension_examples(word, stem):
    assert porter_stem(word) == stem == NLTK.stem(word)


def test_length_rule_looks_at_the_word_before_lowercasing():
    # 'İ' lowercases to two characters: nltk keeps two-letter words whole by their
    # length as given, so 'İs' is returned lowercased, with its 's'
    assert porter_stem("İs") == NLTK.stem("İs") == "İs".lower()


def test_y_is_a_vowel_after_a_consonant_and_a_consonant_at_the_start_or_after_a_vowel():
    assert consonant_pattern("toy") == "cvc"
    assert consonant_pattern("syzygy") == "cvcvcv"
    assert consonant_pattern("yes") == "cvc"
    assert consonant_pattern("yyy") == "cvc"


def test_clearing_the_word_caches_empties_them_and_changes_no_token():
    line, summary = "It costs $1,000.50-2 (approx.).", "The cats were running\nHappily, generously."
    warm = text.tokenize_13a(line), text.rouge_tokens(summary, stem=True)
    assert len(text._13a_cache) > 0 and len(text._stem_cache) > 0
    text.clear_word_caches()
    assert len(text._13a_cache) == 0 and len(text._stem_cache) == 0
    assert (text.tokenize_13a(line), text.rouge_tokens(summary, stem=True)) == warm
