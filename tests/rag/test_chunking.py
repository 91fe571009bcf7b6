"""Chunking: whole sentences, word budgets, overlap, offsets into the original text."""

import pytest

from tokenloom.rag.chunking import chunk_text, split_sentences


def test_sentences_keep_abbreviations_and_offsets():
    text = "Dr. Smith went to Washington. He met Mr. Jones!  Then? They left."
    spans = split_sentences(text)
    assert [s.text for s in spans] == ["Dr. Smith went to Washington.", "He met Mr. Jones!", "Then?", "They left."]
    assert all(text[s.start:s.end] == s.text for s in spans)


def test_chunks_are_whole_sentences_within_the_word_budget():
    text = " ".join(f"Sentence number {i} has six words." for i in range(20))
    chunks = chunk_text(text, size=20, overlap=6)
    assert all(len(c.text.split()) <= 20 for c in chunks)
    assert all(c.text.endswith(".") and c.text[0].isupper() for c in chunks)
    assert all(text[c.start:c.end] == c.text for c in chunks)
    for a, b in zip(chunks, chunks[1:]):  # one six-word sentence shared
        assert a.text.split(". ")[-1] == b.text.split(". ")[0] + "." or b.start < a.end


def test_a_long_sentence_is_cut_into_word_windows():
    text = " ".join(f"w{i}" for i in range(25))
    chunks = chunk_text(text, size=10, overlap=2)
    assert [c.text.split()[0] for c in chunks] == ["w0", "w8", "w16"]
    assert chunks[-1].text.split()[-1] == "w24"


@pytest.mark.parametrize("size, overlap", [(0, 0), (10, 10), (10, -1), (2.5, 0)])
def test_bad_sizes_say_what_is_allowed(size, overlap):
    with pytest.raises(ValueError, match="chunk (size|overlap)"):
        chunk_text("x", size=size, overlap=overlap)
