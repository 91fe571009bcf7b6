"""private_apis.py: each private API, made to look missing, leaves the public fallback giving the
same results, and says so once at WARNING."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch

from tokenloom import private_apis
from tokenloom.model import kernels, quant
from tokenloom.model.config import ModelConfig
from tokenloom.model.transformer import Transformer

LOGGER = "tokenloom.private_apis"


@pytest.fixture(autouse=True)
def fresh_probes():
    """Each test probes afresh, and leaves the answers of the real probes behind it."""
    private_apis.reset()
    kernels.bfloat16_packing.cache_clear()
    yield
    private_apis.reset()
    kernels.bfloat16_packing.cache_clear()


def make_missing(monkeypatch, name: str) -> None:
    """The entry's API as a newer release without it would look: its probe raises."""

    def gone():
        raise AttributeError(f"simulated: {name} is not in this release")

    monkeypatch.setitem(private_apis.PROBES, name, private_apis.PROBES[name]._replace(probe=gone))


def warnings_about(caplog, name: str) -> list[str]:
    api = private_apis.PROBES[name].api
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
            and r.getMessage().startswith(api)]


@pytest.mark.skipif(not torch.__version__.startswith("2.13."), reason="the probes are pinned on the tested torch 2.13")
def test_every_private_api_is_found_on_the_tested_torch(caplog):
    assert private_apis.report() == dict.fromkeys(private_apis.PROBES, True)
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_an_unknown_entry_is_refused_naming_the_entries():
    with pytest.raises(ValueError, match="no private-API entry 'mkldnn'; the entries are count_elements, mkldnn_linear"):
        private_apis.usable("mkldnn")


def test_counting_without_collections_count_elements_gives_counters_counts(monkeypatch, caplog):
    from tokenloom.metrics.text import counts, ngram_iter

    grams = list(ngram_iter("the cat sat on the mat the cat".split(), 2)) * 3
    fast = counts(grams)
    make_missing(monkeypatch, "count_elements")
    private_apis.reset()
    assert private_apis.counting_loop() is private_apis._count_in_python
    slow = counts(grams)
    assert slow == fast == dict(Counter(grams))
    counts(grams)
    assert len(warnings_about(caplog, "count_elements")) == 1
    assert "Python loop" in warnings_about(caplog, "count_elements")[0]


def tiny_model(dtype: torch.dtype) -> Transformer:
    config = ModelConfig(vocab_size=96, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=128, max_seq_len=32,
                         tie_embeddings=True)
    model = Transformer(config)
    model.init_weights(seed=0)
    return model.to(dtype).eval()


def packed_count(model: Transformer) -> int:
    linears = [m for m in model.modules() if isinstance(m, kernels.Linear)]
    return sum(m.packed is not None for m in linears) + (model.packed_output is not None)


@pytest.mark.parametrize(("name", "dtype", "tolerance"), [
    ("mkldnn_linear", torch.float32, 1e-5),
    ("tensor_version", torch.float32, 1e-5),
    ("mkldnn_bf16_check", torch.bfloat16, 5e-2),
])
def test_without_onednn_packing_the_logits_are_those_of_the_packed_model(monkeypatch, caplog, name, dtype, tolerance):
    if dtype == torch.bfloat16 and not kernels.bfloat16_packing():
        pytest.skip("this CPU cannot pack bfloat16 weights, so there is no packed path to compare with")
    ids = torch.tensor([[5, 17, 3, 60, 2, 9]])
    model = tiny_model(dtype)
    model.pack_for_inference()
    assert packed_count(model) > 0  # the fast path ran first
    with torch.inference_mode():
        packed = model.project(model.hidden(ids)).float()
        packed_one = model.project(model.hidden(ids[:, :1])).float()

    make_missing(monkeypatch, name)
    private_apis.reset()
    kernels.bfloat16_packing.cache_clear()
    model.pack_for_inference()
    assert packed_count(model) == 0
    with torch.inference_mode():
        plain = model.project(model.hidden(ids)).float()
        plain_one = model.project(model.hidden(ids[:, :1])).float()
    torch.testing.assert_close(plain, packed, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(plain_one, packed_one, rtol=tolerance, atol=tolerance)
    model.pack_for_inference()
    assert len(warnings_about(caplog, name)) == 1


def test_int4_products_without_pytorchs_int4_kernel_dequantize_to_the_same_result(monkeypatch, caplog):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(48, 256, generator=generator)
    x = torch.randn(2, 3, 256, generator=generator)  # (B, T, K): fewer rows than DENSE_ROWS, the kernel's case
    fast = quant.Int4Linear(*quant.quantize_int4(weight))
    assert fast.packed is not None

    make_missing(monkeypatch, "int4")
    private_apis.reset()
    slow = quant.Int4Linear(*quant.quantize_int4(weight))
    assert slow.packed is None and not quant.int4_kernel()
    expected = x.to(torch.bfloat16).float() @ fast.dequantize().float().T  # (2, 3, 48)
    scale = expected.abs().max().item()  # both round their sums to bfloat16 (8 bits of mantissa)
    torch.testing.assert_close(fast(x).float(), expected, rtol=0, atol=1e-2 * scale)
    torch.testing.assert_close(slow(x).float(), expected, rtol=0, atol=1e-2 * scale)
    quant.Int4Linear(*quant.quantize_int4(weight))
    assert len(warnings_about(caplog, "int4")) == 1


def test_the_cpp_compiler_check_without_inductors_lookup_agrees_with_it(monkeypatch, caplog):
    found = private_apis.cpp_compiler_found()
    make_missing(monkeypatch, "inductor_cpp")
    private_apis.reset()
    assert private_apis.cpp_compiler_found() == found
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not private_apis.cpp_compiler_found()
    assert len(warnings_about(caplog, "inductor_cpp")) == 1


def test_the_compiled_step_sees_tokenlooms_dynamo_settings_and_the_process_does_not():
    from tokenloom.generation.engine import CompiledStep

    name, value = next(iter(private_apis.DYNAMO_SETTINGS.items()))
    before = getattr(torch._dynamo.config, name)
    assert before != value  # dynamo's own default; otherwise this test shows nothing
    inside = CompiledStep(lambda: getattr(torch._dynamo.config, name))()
    assert inside == value and getattr(torch._dynamo.config, name) == before


@pytest.mark.slow  # dynamo traces the model (the eager backend: no C++), about ten seconds
def test_compiled_decoding_without_the_private_compile_apis_gives_the_eager_tokens(monkeypatch, caplog, tiny_llama_dir):
    """Engine.compile without the guard filter and the dynamo setting: dynamo's defaults, the same
    tokens (the eager backend stands in for inductor's C++ so that this stays cheap)."""
    import tokenloom as tl

    for name in ("skip_module_guards", "dynamo_config"):
        make_missing(monkeypatch, name)
    seen = []
    real_compile = torch.compile

    def compile_eagerly(model, dynamic=None, options=None):
        seen.append(options)
        return real_compile(model, dynamic=dynamic, backend="eager")

    monkeypatch.setattr(torch, "compile", compile_eagerly)
    eager, compiled = tl.load(tiny_llama_dir), tl.load(tiny_llama_dir, compile=True)
    assert compiled.engine.compiled and seen == [{}]  # no guard filter asked for
    params = tl.SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    assert compiled.generate("The cat sat", params).token_ids == eager.generate("The cat sat", params).token_ids
    compiled.generate("A dog", params)
    assert len(warnings_about(caplog, "skip_module_guards")) == len(warnings_about(caplog, "dynamo_config")) == 1
    torch._dynamo.reset()
