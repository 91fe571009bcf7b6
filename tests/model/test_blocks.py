"""tokenloom's GGUF block kernels (model/blocks.py), every variant this CPU can run, against float64.

Each variant (AVX-512 VNNI, AVX2, portable C) is loaded by name, so a machine with
AVX-512 tests all three; an AVX2-only machine tests two and skips the first, saying why.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from gguf import quants
from gguf.constants import GGMLQuantizationType

import tokenloom as tl
from tokenloom.model import blocks, quant
from tokenloom.model.fused_decode import FusedDecoder

VARIANTS = [
    pytest.param(v, marks=pytest.mark.skipif(v not in blocks.supported_variants(),
                                             reason=f"this CPU ({blocks.cpu_model()}) cannot run the {v} kernels"))
    for v in blocks.VARIANTS
]
pytestmark = pytest.mark.skipif(blocks.library("portable") is None, reason="no C compiler: the block kernels cannot be built")


def random_blocks(kind: str, n: int, k: int, seed: int = 0) -> torch.Tensor:
    """(n, row bytes) of valid blocks: random codes, scales of realistic size as float16."""
    g = torch.Generator().manual_seed(seed)
    nb, size = k // blocks.WIDTH[kind], blocks.BYTES[kind]
    raw = torch.randint(0, 256, (n, nb, size), dtype=torch.uint8, generator=g)

    def half(low, high):
        return (torch.rand(n, nb, 1, generator=g) * (high - low) + low).half().view(torch.uint8)

    if kind == "Q6_K":
        raw[..., 208:210] = half(0.001, 0.02)
    else:
        raw[..., 0:2] = half(0.001, 0.02)
    if kind in ("Q4_1", "Q4_K", "Q5_K"):
        raw[..., 2:4] = half(-0.1, 0.1) if kind == "Q4_1" else half(0.001, 0.02)
    if kind == "Q8_0":
        raw[..., 2:] = torch.randint(-127, 128, (n, nb, 32), dtype=torch.int8, generator=g).view(torch.uint8)
    return raw.reshape(n, -1).contiguous()


def reference_weights(data: torch.Tensor, kind: str, n: int, k: int) -> torch.Tensor:
    """The `gguf` package's own numpy dequantizer, in float64."""
    values = quants.dequantize(data.numpy(), GGMLQuantizationType[kind])
    return torch.from_numpy(values.astype(np.float64)).view(n, k)


def quantized_activations(x: torch.Tensor) -> torch.Tensor:
    """x as the kernels see it, in float64: per group of 32, d = max|x| / 127 and q = round(x / d)."""
    groups = x.double().view(x.shape[0], -1, 32)
    d = (groups.abs().amax(-1, keepdim=True).float() / 127).double()  # the kernels compute d in float32
    q = torch.where(d > 0, torch.round(groups / torch.where(d > 0, d, 1)), 0)
    return (q * d).view(x.shape)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", list(blocks.KINDS))
def test_products_equal_float64_on_the_quantized_activations(variant, kind):
    lib = blocks.library(variant)
    n, k = 80, 512
    data = random_blocks(kind, n, k)
    weights = reference_weights(data, kind, n, k)
    assert torch.equal(blocks.dequantize(lib, data, blocks.KINDS[kind], n, k, torch.float32).double(), weights)
    x = torch.randn(7, k, generator=torch.Generator().manual_seed(1))
    y = blocks.matmul(lib, x, data, blocks.KINDS[kind], n).double()
    exact = quantized_activations(x) @ weights.T  # the same inputs, summed in float64
    assert ((y - exact).norm() / exact.norm()).item() < 2e-6
    plain = x.double() @ weights.T  # what 8-bit activations cost against float inputs
    assert ((y - plain).norm() / plain.norm()).item() < 0.02


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", ["Q4_1", "Q8_0", "Q6_K"])
def test_a_row_gives_the_same_bits_alone_and_in_any_batch(variant, kind):
    lib = blocks.library(variant)
    data = random_blocks(kind, 64, 256)
    x = torch.randn(9, 256)
    together = blocks.matmul(lib, x, data, blocks.KINDS[kind], 64)
    for rows in (slice(4, 5), slice(3, 6), slice(0, 9)):
        assert torch.equal(blocks.matmul(lib, x[rows], data, blocks.KINDS[kind], 64), together[rows])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", blocks.TILED)
def test_eight_row_tiles_give_the_products_and_weights_of_the_file_layout(variant, kind):
    lib = blocks.library(variant)
    n, k = 40, 512
    data = random_blocks(kind, n, k, seed=3)
    tiles, code = blocks.repack(lib, data, blocks.KINDS[kind], n, k)
    assert code == blocks.KINDS[kind] + blocks.X8 and tiles.shape == data.shape and not torch.equal(tiles, data)
    weights = reference_weights(data, kind, n, k)
    assert torch.equal(blocks.dequantize(lib, tiles, code, n, k, torch.float32).double(), weights)
    assert torch.equal(blocks.dequantize(lib, tiles, code, n, k, torch.bfloat16),
                       blocks.dequantize(lib, data, blocks.KINDS[kind], n, k, torch.bfloat16))
    x = torch.randn(10, k, generator=torch.Generator().manual_seed(2))  # 8 rows on: two row blocks a vector
    y = blocks.matmul(lib, x, tiles, code, n).double()
    exact = quantized_activations(x) @ weights.T
    assert ((y - exact).norm() / exact.norm()).item() < 2e-6
    for rows in (slice(2, 3), slice(1, 6), slice(0, 9)):  # a row's bits do not depend on the batch around it
        assert torch.equal(blocks.matmul(lib, x[rows], tiles, code, n).double(), y[rows])


@pytest.mark.parametrize("kind", blocks.TILED)
def test_every_variant_gives_the_same_bits_on_tiles(kind):
    """Integer sums, then the same two float steps in the same order: AVX-512, AVX2 and C agree exactly."""
    n, k = 40, 256  # five row blocks: two pairs and one alone where a vector takes two
    data = random_blocks(kind, n, k, seed=4)
    x = torch.randn(11, k, generator=torch.Generator().manual_seed(5))
    outputs = {}
    for variant in blocks.supported_variants():
        lib = blocks.library(variant)
        tiles, code = blocks.repack(lib, data, blocks.KINDS[kind], n, k)
        outputs[variant] = blocks.matmul(lib, x, tiles, code, n)
    first = outputs.pop("portable")
    assert all(torch.equal(first, y) for y in outputs.values()), list(outputs)


def test_tiles_refuse_a_row_count_or_format_they_do_not_take():
    lib = blocks.library("portable")
    assert not blocks.tiled("Q4_1", 12) and not blocks.tiled("Q6_K", 16) and blocks.tiled("Q8_0", 16)
    with pytest.raises(RuntimeError, match="unsupported format or shape"):
        blocks.repack(lib, random_blocks("Q4_1", 12, 64), blocks.KINDS["Q4_1"], 12, 64)
    with pytest.raises(RuntimeError, match="unsupported format or shape"):
        blocks.repack(lib, random_blocks("Q6_K", 16, 256), blocks.KINDS["Q6_K"], 16, 256)
    tiles, code = blocks.repack(lib, random_blocks("Q4_1", 16, 64), blocks.KINDS["Q4_1"], 16, 64)
    with pytest.raises(RuntimeError, match="unsupported format or shape"):  # 12 rows of a 16-row tiling
        blocks.matmul(lib, torch.randn(2, 64), tiles[:12], code, 12)


def test_bfloat16_dequantization_rounds_to_nearest_even():
    lib = blocks.library("portable")
    data = random_blocks("Q4_1", 16, 64)
    full = blocks.dequantize(lib, data, blocks.KINDS["Q4_1"], 16, 64, torch.float32)
    assert torch.equal(blocks.dequantize(lib, data, blocks.KINDS["Q4_1"], 16, 64, torch.bfloat16), full.bfloat16())


def test_bad_shapes_and_formats_get_clear_errors():
    lib = blocks.library("portable")
    data = random_blocks("Q4_K", 4, 256)
    with pytest.raises(RuntimeError, match="unsupported format or shape"):
        blocks.matmul(lib, torch.randn(2, 96), data, blocks.KINDS["Q4_K"], 4)  # 96 is not a multiple of 256
    with pytest.raises(ValueError, match="contiguous uint8"):
        blocks.matmul(lib, torch.randn(2, 256), data.int(), blocks.KINDS["Q4_K"], 4)
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        blocks.dequantize(lib, data, blocks.KINDS["Q4_K"], 4, 256, torch.float16)


def test_an_unknown_or_unsupported_variant_warns_and_falls_back(monkeypatch, caplog):
    blocks._warn_once.cache_clear()
    monkeypatch.setenv(blocks.ENV, "sse9")
    with caplog.at_level(logging.WARNING, logger="tokenloom.model.blocks"):
        assert blocks.chosen_variant() == blocks.supported_variants()[0]
    assert "'sse9' is not a kernel variant" in caplog.text
    monkeypatch.setenv(blocks.ENV, "portable")
    assert blocks.chosen_variant() == "portable"
    monkeypatch.setenv(blocks.ENV, "off")
    assert blocks.chosen_variant() is None and not blocks.available()


def test_a_header_missing_from_an_install_warns_and_falls_back(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(blocks, "HEADERS", ("absent.h",))
    monkeypatch.setattr(blocks, "_libs", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="tokenloom.model.blocks"):
        assert blocks.library("portable") is None
    assert "portable GGUF kernels could not be built" in caplog.text and "absent.h" in caplog.text


def test_the_custom_operator_traces_under_torch_compile():
    data = random_blocks("Q4_1", 32, 64)

    def f(x):
        return blocks.block_mm(x * 2, data, blocks.KINDS["Q4_1"], 32).relu()

    x = torch.randn(3, 64)
    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="eager")(x), f(x))


# -- the fused decode step on the real model -------------------------------------------------
def _decode_logits(model, ids: list[int], steps: int, fused: bool) -> torch.Tensor:
    saved = model.fused_decoder
    model.fused_decoder = saved if fused else None
    try:
        pool = model.new_kv_pool()
        pool.reserve(2, 64)
        with torch.inference_mode():
            model(torch.tensor([ids]), cache=pool.prefill_view(1, 0, len(ids)))
            out = []
            for i in range(steps):
                token = torch.tensor([[ids[i % len(ids)]]])
                out.append(model(token, cache=pool.decode_view([1], [len(ids) + i]), last_only=True)[0, -1].float())
        return torch.stack(out)
    finally:
        model.fused_decoder = saved


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    p, q = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    return (p.exp() * (p - q)).sum(-1)


def test_the_fused_step_computes_what_the_layer_by_layer_step_does(smollm, smollm_native):
    """Both run the same block products on 8-bit activations; the norms, rope and attention sum in
    other orders, and a rounding that moves one activation to the next 8-bit step grows over 30
    layers. So both are held to float32 itself: each is as close to it as the other (measured
    KL about 0.001-0.009 for both), and to each other."""
    model = smollm_native.model
    assert isinstance(model.fused_decoder, FusedDecoder)
    ids = smollm_native.tokenizer.encode("The cat sat on the mat because it was")
    fused, layered = _decode_logits(model, ids, 6, True), _decode_logits(model, ids, 6, False)
    exact = _decode_logits(smollm.model, ids, 6, False)
    assert _kl(exact, fused).max() < 0.02 and _kl(exact, layered).max() < 0.02
    assert _kl(layered, fused).max() < 0.02
    assert (fused.argmax(-1) == exact.argmax(-1)).float().mean() >= 5 / 6


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_decode_steps_attention_is_a_float64_softmax_to_float32_rounding(variant):
    """Every length from 1 to 80 (the vector loops, their C tails, one position alone) and head sizes
    that fill four vectors or leave a remainder, against softmax(q·Kᵀ·scale)·V in float64."""
    lib = blocks.library(variant)
    g = torch.Generator().manual_seed(11)
    for D in (64, 48, 24):
        for S in (*range(1, 40), 47, 64, 80):
            q, keys, values = torch.randn(D, generator=g), torch.randn(S, D, generator=g), torch.randn(S, D, generator=g)
            scale = D ** -0.5
            weights = (keys.double() @ q.double() * scale).softmax(0)
            exact = weights @ values.double()
            got = blocks.attend_head(lib, q, keys, values, scale).double()
            assert (got - exact).abs().max().item() < 2e-6, (D, S)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_decodes_the_same_text(smollm_native, variant):
    model = smollm_native.model
    saved = model.fused_decoder
    model.fused_decoder = FusedDecoder(model, blocks.library(variant))
    try:
        # past 16 positions, and not a multiple of 16: the attention's vector loops and their C tail
        ids = smollm_native.tokenizer.encode("The capital of France is Paris. The capital of Italy is Rome. "
                                             "The capital of Spain is Madrid. The capital of Germany is")
        assert len(ids) > 16 and len(ids) % 16
        logits = _decode_logits(model, ids, 4, True)
    finally:
        model.fused_decoder = saved
    reference = _decode_logits(model, ids, 4, True)
    assert _kl(reference, logits).max() < 0.02  # each variant sums in its own order
    assert torch.equal(logits.argmax(-1), reference.argmax(-1))


def test_a_sequence_decodes_the_same_beside_others(smollm_native):
    """Row 0 alone and row 0 beside two other sequences at other lengths: the same bits."""
    lm = smollm_native
    prompts = [lm.tokenizer.encode(t) for t in ("Once upon a time", "The river", "Numbers: 1, 2, 3,")]
    pool = lm.model.new_kv_pool()
    pool.reserve(4, 64)
    with torch.inference_mode():
        for slot, p in enumerate(prompts):
            lm.engine.prefill(pool, slot, p, 0)
        lm.engine.prefill(pool, 3, prompts[0], 0)
        together = lm.engine.decode(pool, [0, 1, 2], [len(p) for p in prompts], [11, 12, 13])
        alone = lm.engine.decode(pool, [3], [len(prompts[0])], [11])
    assert torch.equal(together[0], alone[0])


def test_a_position_past_the_pool_is_refused(smollm_native):
    model = smollm_native.model
    pool = model.new_kv_pool()
    pool.reserve(1, 8)
    view = pool.decode_view([0], [pool.capacity - 1])
    view.lengths[0] = pool.capacity  # as a corrupted view would carry
    with pytest.raises(RuntimeError, match="outside the KV pool"), torch.inference_mode():
        model.fused_decoder(torch.zeros(1, model.config.dim), view)


def test_native_precision_falls_back_to_pytorch_int4_when_the_kernels_are_off(monkeypatch):
    if not quant.int4_kernel():
        pytest.skip("this torch lacks the int4 CPU kernels")
    monkeypatch.setenv(blocks.ENV, "off")
    lm = tl.load("smollm2-135m-instruct")
    assert lm.model.precision == "native" and lm.model.fused_decoder is None
    assert isinstance(lm.model.blocks[0].mlp.up, quant.Int4Linear)
    text = lm.generate("The capital of France is", tl.SamplingParams(temperature=0, max_tokens=3)).text
    assert "Paris" in text


def test_every_kernel_source_and_header_is_package_data():
    """A wheel carries what the kernels are built from at run time: each file in model/csrc."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tokenloom"]
    csrc = root / "src" / "tokenloom" / "model" / "csrc"
    needed = {*blocks.SOURCES, *blocks.HEADERS, *(p.name for p in csrc.glob("*.[ch]"))}
    missing = [n for n in sorted(needed) if not any(fnmatch.fnmatch(f"model/csrc/{n}", g) for g in globs)]
    assert not missing, f"not in the package data: {missing}"


def test_long_inputs_take_the_tiles_unless_bfloat16_products_are_native(monkeypatch):
    n, k = 32, 256
    data = random_blocks("Q4_1", n, k, seed=6)
    layer = quant.BlockLinear(quant.Blocks("Q4_1", data.view(n, k // 32, 20)))
    assert layer.code == blocks.KINDS["Q4_1"] + blocks.X8 and "eight-row tiles" in repr(layer)
    x = torch.randn(1, 300, k, generator=torch.Generator().manual_seed(7))
    on_tiles = blocks.block_mm(x[0], layer.data, layer.code, n)
    monkeypatch.setattr(quant, "dense_dtype", lambda: torch.float32)
    assert quant.dense_from(tiled=True) is None and quant.dense_from(tiled=False) == quant.DENSE_ROWS
    assert torch.equal(layer(x)[0], on_tiles)  # 300 positions still on the tiles
    monkeypatch.setattr(quant, "dense_dtype", lambda: torch.bfloat16)
    assert quant.dense_from(tiled=True) == quant.DENSE_ROWS_TILED
    dense = torch.nn.functional.linear(x.bfloat16(), layer.dequantize(torch.bfloat16)).float()
    assert torch.equal(layer(x), dense)
    assert torch.equal(layer(x[:, :200])[0], on_tiles[:200])  # below the crossover: tiles


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_token_bitmask_applies_as_numpy_would(variant):
    """Words all set, all clear and mixed; tokens past `known` forbidden; rows with none counted."""
    lib = blocks.library(variant)
    rng = np.random.default_rng(0)
    B, V, known = 4, 1000, 990
    words = rng.integers(0, 2**32, size=(B, 32), dtype=np.uint32)  # 1024 bits: more than V
    words[0, :5], words[1, 3:9] = 0xFFFFFFFF, 0
    words[3] = 0  # a dead end
    logits = torch.randn(B, V, generator=torch.Generator().manual_seed(8))
    out, empty = blocks.apply_bitmask(lib, words, logits, known)
    bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, :V].astype(bool)
    bits[:, known:] = False
    expected = np.where(bits, logits.numpy(), np.float32(-np.inf))
    assert np.array_equal(out.numpy(), expected) and empty == 1
    with pytest.raises(ValueError, match="contiguous"):
        blocks.apply_bitmask(lib, words, logits.t().contiguous().t(), known)
