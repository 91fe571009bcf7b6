"""Decode steps through torch.compile: the same tokens as eager, one compilation for all requests."""

from __future__ import annotations

import pytest
import torch

import tokenloom as tl

pytestmark = pytest.mark.slow  # inductor compiles C++ kernels: tens of seconds


def test_compiled_decode_matches_eager_and_compiles_once(tiny_llama_dir):
    from torch._dynamo.utils import counters

    config_before = torch._dynamo.config.get_config_copy()
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
    # tokenloom's dynamo settings hold only inside its compiled calls: the process's are untouched
    changed = {k: v for k, v in torch._dynamo.config.get_config_copy().items() if config_before.get(k) != v}
    assert changed == {}
    torch._dynamo.reset()


def test_compiled_one_position_attention_equals_eager():
    """Under inductor, decode attention is written as summed products; it must equal the eager products."""
    from tokenloom.model.config import ModelConfig
    from tokenloom.model.transformer import Attention

    config = ModelConfig(vocab_size=16, dim=64, n_layers=1, n_heads=4, n_kv_heads=2, hidden_dim=96, max_seq_len=32)
    attn = Attention(config)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 4, 1, 16, generator=gen)
    k, v = torch.randn(3, 2, 9, 16, generator=gen), torch.randn(3, 2, 9, 16, generator=gen)
    mask = torch.ones(3, 1, 1, 9, dtype=torch.bool)
    mask[0, ..., :4] = False  # a left-padded row
    compiled = torch.compile(attn.attend, dynamic=True)
    for m, scale in ((mask, 0.25), (None, 1.0)):
        expected = attn.attend(q, k, v, m, scale)
        torch.testing.assert_close(compiled(q, k, v, m, scale), expected, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()


def test_compiled_causal_window_attention_equals_eager_with_gradients():
    """Short causal windows under inductor (training) take the plain products; values and gradients match SDPA."""
    from tokenloom.model.config import ModelConfig
    from tokenloom.model.transformer import Attention

    config = ModelConfig(vocab_size=16, dim=64, n_layers=1, n_heads=4, n_kv_heads=2, hidden_dim=96, max_seq_len=32)
    attn = Attention(config)
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, 12, 16, generator=gen, requires_grad=True)
    k = torch.randn(2, 2, 12, 16, generator=gen, requires_grad=True)
    v = torch.randn(2, 2, 12, 16, generator=gen, requires_grad=True)
    upstream = torch.randn(2, 4, 12, 16, generator=gen)
    results = []
    for fn in (attn.attend, torch.compile(attn.attend)):
        out = fn(q, k, v, None, 0.25)
        grads = torch.autograd.grad(out, (q, k, v), upstream)
        results.append((out.detach(), *grads))
    for compiled, eager in zip(results[1], results[0]):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()
