"""Fixtures of the generation tests: llama.cpp's samplers as an oracle, real next-token logits."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # llamacpp_oracle.py, shared with benchmarks/

from llamacpp_oracle import load_oracle  # noqa: E402

# Prompts whose next-token distributions range from peaked to flat.
TEXTS = (
    "The cat sat on the",
    "Once upon a time",
    "The capital of France is",
    "def fibonacci(n):",
    "1, 2, 3, 4,",
    "I think that",
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the",
    "Question: What is the boiling point of water?\nAnswer:",
)


@pytest.fixture(scope="session")
def llama_oracle():
    return load_oracle(pytest)


@pytest.fixture(scope="session")
def real_logits(smollm):
    """[(prompt ids, (V,) float32 next-token logits)] of TEXTS under SmolLM2."""
    return [(smollm.encode_prompt(text), smollm.next_token_logits(text).float()) for text in TEXTS]
