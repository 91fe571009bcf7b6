"""Tokenizers trained on the corpus, the memory-mapped token cache, random windows."""

import numpy as np
import pytest
import torch

from tokenloom.errors import InvalidArgument
from tokenloom.training.data import (
    TokenData, WindowSampler, bpe_tokenizer, char_tokenizer, default_corpus, prepare_data, read_corpus, windows,
)


def test_packaged_corpus_is_tiny_shakespeare():
    text = read_corpus(None)
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")
    assert default_corpus().name == "tiny_shakespeare.txt"


def test_char_tokenizer_uses_sorted_character_ids_like_nanogpt():
    text = read_corpus(None)[:5000] + "".join(sorted(set(read_corpus(None))))
    tok = char_tokenizer(text)
    assert tok.vocab_size == 65
    assert tok.encode("First") == [18, 47, 56, 57, 58]
    sample = "ROMEO:\nBut soft, what light?\n\n  x"
    assert tok.decode(tok.encode(sample)) == sample
    assert len(tok.encode(sample)) == len(sample)


def test_char_tokenizer_survives_save_and_load(tmp_path):
    from tokenloom.tokenizer import Tokenizer

    tok = char_tokenizer("abc \n")
    tok.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.encode("a b\nc") == tok.encode("a b\nc") and again.decode(again.encode("cab ")) == "cab "


def test_bpe_tokenizer_round_trips_and_has_the_requested_vocab():
    text = read_corpus(None)[:20000]
    tok = bpe_tokenizer(text, 400)
    assert tok.vocab_size == 400
    sample = "KING RICHARD III: é 12"
    assert tok.decode(tok.encode(sample)) == sample
    assert len(tok.encode(text[:2000])) < 2000


def test_prepare_data_splits_before_tokenizing_and_reuses_the_cache(tmp_path):
    text = "abcdefghij" * 100
    tok = char_tokenizer(text)
    prepare_data(tmp_path, text, tok, "char", 0.1)
    data = TokenData.open(tmp_path)
    assert len(data.train) == 900 and len(data.val) == 100 and data.train.dtype == np.uint16
    assert data.tokenizer.decode(data.val[:10].tolist()) == "abcdefghij"
    stamp = (tmp_path / "train.bin").stat().st_mtime_ns
    prepare_data(tmp_path, text, tok, "char", 0.1)
    assert (tmp_path / "train.bin").stat().st_mtime_ns == stamp
    with pytest.raises(InvalidArgument, match="fewer than context"):
        data.check_context(200)


def test_windows_give_targets_shifted_by_one_token():
    ids = np.arange(100, dtype=np.uint16)
    x, y = windows(ids, torch.tensor([0, 37]), context=5)
    assert x.tolist() == [[0, 1, 2, 3, 4], [37, 38, 39, 40, 41]]
    assert y.tolist() == [[1, 2, 3, 4, 5], [38, 39, 40, 41, 42]]
    assert x.dtype == torch.int64


def test_sampler_is_deterministic_and_resumes_from_its_state():
    a, b = WindowSampler(1000, 16, seed=7), WindowSampler(1000, 16, seed=7)
    first = a.draw(8)
    assert torch.equal(first, b.draw(8)) and int(first.max()) < 1000 - 16
    saved = a.state_dict()
    expected = a.draw(8)
    c = WindowSampler(1000, 16, seed=0)
    c.load_state_dict(saved)
    assert torch.equal(c.draw(8), expected)
    assert not torch.equal(WindowSampler(1000, 16, seed=8).draw(8), first)


def test_missing_data_path_is_an_invalid_argument(tmp_path):
    with pytest.raises(InvalidArgument, match="does not exist"):
        read_corpus(str(tmp_path / "nope.txt"))
    with pytest.raises(InvalidArgument, match="no \\*.txt"):
        read_corpus(str(tmp_path))
