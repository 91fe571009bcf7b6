"""The shared sentence embedder (all-MiniLM-L6-v2 from the bundled package)."""

import pytest
import torch

pytest.importorskip("sentence_transformers", reason="the optional extra tokenloom[rag] is not installed")

from tokenloom.embed import DIMENSION, Embedder, EmbedderUnavailable, default_embedder  # noqa: E402


def test_paraphrases_are_closer_than_unrelated_sentences():
    emb = default_embedder()
    v = emb.encode(["The cat sat on the mat.", "A cat was sitting on the mat.", "Stock prices fell sharply."])
    assert v.shape == (3, DIMENSION) and v.dtype == torch.float32
    assert torch.allclose(v.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert float(v[0] @ v[1]) > 0.8 > 0.2 > float(v[0] @ v[2])


def test_empty_input_gives_no_rows_and_one_string_gives_one():
    emb = default_embedder()
    assert emb.encode([]).shape == (0, DIMENSION)
    assert emb.encode("one sentence").shape == (1, DIMENSION)
    assert default_embedder() is emb


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(EmbedderUnavailable, match="not a sentence-transformers model folder"):
        Embedder(tmp_path)
