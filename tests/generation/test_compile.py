"""Decode steps through torch.compile: the same tokens as eager, one compilation for all requests."""

from __future__ import annotations

import pytest
import torch

import tokenloom as tl

pytestmark = pytest.mark.slow  # inductor compiles C++ kernels: tens of seconds


def test_compiled_decode_matches_eager_and_compiles_once(tiny_llama_dir):
    from torch._dynamo.utils import counters

    eager = tl.load(tiny_llama_dir)
    compiled = tl.load(tiny_llama_dir, compile=True)
    assert compiled.engine.compiled and not eager.engine.compiled
    params = tl.SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    first = compiled.generate("The cat sat", params)
    assert first.token_ids == eager.generate("The cat sat", params).token_ids
    graphs = counters["stats"]["unique_graphs"]
    # another prompt length, another cache length, a sampled request: no new graph
    other = tl.SamplingParams(temperature=0.8, top_k=20, seed=3, max_tokens=7, ignore_eos=True)
    second = compiled.generate("A dog ran in the park and", other)
    assert second.token_ids == eager.generate("A dog ran in the park and", other).token_ids
    assert counters["stats"]["unique_graphs"] == graphs
    torch._dynamo.reset()
