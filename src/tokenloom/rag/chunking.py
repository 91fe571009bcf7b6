"""Sentence splitting and chunking, with character offsets into the original text.

Chunks are measured in **words** (whitespace-separated tokens), not in the embedder's
word pieces: a word count is stable across tokenizers and cheap. all-MiniLM-L6-v2
truncates at 256 word pieces, and English runs at about 1.3 pieces a word, so the
default of 150 words (about 200 pieces) embeds whole.

    >>> [c.text for c in chunk_text("One two. Three four five. Six.", size=5, overlap=3)]
    ['One two. Three four five.', 'Three four five. Six.']

A chunk is a run of whole sentences whose words add up to at most `size`; the next
chunk starts at the earliest sentence such that the sentences it repeats hold at most
`overlap` words (at least one new sentence always follows). A sentence longer than
`size` is cut into windows of `size` words, `overlap` of them shared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tokenloom.errors import InvalidArgument

# A sentence ends at . ! or ? (optionally followed by quotes or brackets) before
# whitespace and a capital, digit, quote or bracket; or at a blank line.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(\[])|\n\s*\n")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "u.s", "no", "fig"}
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Span:
    text: str
    start: int  # character offsets into the original text: text == original[start:end]
    end: int


def split_sentences(text: str) -> list[Span]:
    """Sentences of `text` with their offsets; an abbreviation such as "Dr." does not end one.

    Examples:
        >>> [s.text for s in split_sentences("Dr. Who left. He came back! Did he?")]
        ['Dr. Who left.', 'He came back!', 'Did he?']
    """
    spans, start = [], 0
    for match in _BOUNDARY.finditer(text):
        head = text[start:match.start()].rstrip()
        last_word = head.rsplit(None, 1)[-1].rstrip(".").lower() if head.split() else ""
        if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
            continue
        spans.append(_trimmed(text, start, match.start()))
        start = match.end()
    spans.append(_trimmed(text, start, len(text)))
    return [s for s in spans if s.text]


def _trimmed(text: str, start: int, end: int) -> Span:
    piece = text[start:end]
    left = len(piece) - len(piece.lstrip())
    right = len(piece.rstrip())
    return Span(piece[left:right], start + left, start + right)


def _word_windows(sentence: Span, size: int, overlap: int) -> list[Span]:
    """A sentence longer than `size` words cut into windows of `size` words, `overlap` shared."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(sentence.text)]
    windows, i = [], 0
    while True:
        piece = words[i:i + size]
        a, b = sentence.start + piece[0][0], sentence.start + piece[-1][1]
        windows.append(Span(sentence.text[piece[0][0]:piece[-1][1]], a, b))
        if i + size >= len(words):
            return windows
        i += size - overlap


def chunk_text(text: str, size: int = 150, overlap: int = 30) -> list[Span]:
    """Chunks of whole sentences of at most `size` words, consecutive chunks sharing up to `overlap` words."""
    if not isinstance(size, int) or size < 1:
        raise InvalidArgument(f"chunk size must be a whole number of words >= 1, got {size!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < size:
        raise InvalidArgument(f"chunk overlap must be a whole number of words in [0, size={size}), got {overlap!r}")
    units: list[Span] = []
    for sentence in split_sentences(text):
        n = len(sentence.text.split())
        units.extend(_word_windows(sentence, size, overlap) if n > size else [sentence])
    counts = [len(u.text.split()) for u in units]
    chunks, first = [], 0
    while first < len(units):
        last, words = first, counts[first]
        while last + 1 < len(units) and words + counts[last + 1] <= size:
            last += 1
            words += counts[last]
        start, end = units[first].start, units[last].end
        chunks.append(Span(text[start:end], start, end))
        if last + 1 >= len(units):
            break
        nxt, shared = last + 1, 0  # step back over whole sentences while they fit in `overlap`
        while nxt - 1 > first and shared + counts[nxt - 1] <= overlap:
            nxt -= 1
            shared += counts[nxt]
        first = nxt
    return chunks
