"""Texts shared by the eval tests: slices of WikiText-2 raw test and SST-2 dev."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="session")
def wiki_text() -> str:
    """The first ~5,200 characters (about 1,200 SmolLM2 tokens) of wiki.test.raw."""
    path = DATA / "wikitext2" / "wiki.test.raw"
    if not path.exists():
        pytest.skip(f"{path} is not there")
    return path.read_text(encoding="utf-8")[:5200]


@pytest.fixture(scope="session")
def sst2_path() -> Path:
    path = DATA / "sst2_dev" / "dev.tsv"
    if not path.exists():
        pytest.skip(f"{path} is not there")
    return path
