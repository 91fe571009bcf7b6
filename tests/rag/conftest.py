"""Fixtures for tokenloom.rag: a fast bag-of-words embedder, SQuAD paragraphs, the real MiniLM."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

def _shared_data() -> Path:
    """The first shared/data above this file (wherever the checkout sits)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return Path("/work/shared/data")


SQUAD = _shared_data() / "squad_v1_dev_xquad_en" / "xquad_en_flat.jsonl"


class WordEmbedder:
    """Hashed bag of lower-cased words, unit length: texts sharing words are close. No model to load."""

    name = "test-bag-of-words"
    dimension = 64

    def encode(self, texts):
        out = torch.zeros(len(texts), self.dimension)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
        return torch.nn.functional.normalize(out, dim=-1)


@pytest.fixture
def embedder():
    return WordEmbedder()


@pytest.fixture
def store(tmp_path, embedder):
    from tokenloom.rag.store import Store

    with Store(tmp_path / "store.db", embedder=embedder) as s:
        yield s


def squad_paragraphs(n: int) -> list[dict]:
    """The first n distinct SQuAD paragraphs with one of their questions each."""
    seen, rows = set(), []
    for line in SQUAD.read_text().splitlines():
        row = json.loads(line)
        key = (row["title"], row["paragraph_index"])
        if key not in seen:
            seen.add(key)
            rows.append(row)
        if len(rows) == n:
            break
    return rows
