"""Native precision: GGUF blocks repacked for PyTorch's int4 kernel, checked against exact math."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tokenloom as tl
from tokenloom.errors import InvalidArgument
from tokenloom.model import quant
from tokenloom.model.gguf import GGUFFile
from tokenloom.model.registry import resolve

pytestmark = pytest.mark.skipif(not quant.available(), reason="this torch lacks the int4 CPU kernels")


@pytest.fixture(scope="module")
def gguf() -> GGUFFile:
    return GGUFFile(resolve("smollm2-135m-instruct")[1])


def reference_dequantize(f: GGUFFile, name: str) -> torch.Tensor:
    """The `gguf` package's own numpy dequantizer: the peer for the block formats."""
    from gguf.constants import GGMLQuantizationType
    from gguf.quants import dequantize

    info = f.tensors[name]
    rows = np.asarray(info.data).reshape(info.shape[0], -1)
    return torch.from_numpy(dequantize(rows, GGMLQuantizationType[info.kind]).astype(np.float32))


@pytest.mark.parametrize("name", ["blk.0.attn_q.weight", "blk.7.ffn_down.weight", "token_embd.weight"])
def test_blocks_dequantize_like_the_gguf_package(gguf, name):
    blocks = gguf.blocks(name)
    assert isinstance(blocks, quant.Blocks) and blocks.kind in ("Q4_1", "Q8_0")
    assert torch.equal(blocks.dequantize(), reference_dequantize(gguf, name))


def test_int4_codes_reproduce_q4_1_exactly(gguf):
    blocks = gguf.blocks("blk.3.ffn_up.weight")
    codes, scale, zero = blocks.int4()
    assert codes.min() >= 0 and codes.max() <= 15
    rebuilt = ((codes.float() - 8).view(*scale.shape, 32) * scale[..., None] + zero[..., None]).view(blocks.shape)
    torch.testing.assert_close(rebuilt, blocks.dequantize(), rtol=0, atol=1e-6)


def test_int4_linear_matches_the_dequantized_product(gguf):
    blocks = gguf.blocks("blk.2.ffn_down.weight")
    layer = quant.Int4Linear.from_blocks(blocks)
    weight = layer.dequantize().float()  # what the kernel computes with: scales rounded to bfloat16
    exact_weight = blocks.dequantize()
    assert (weight - exact_weight).abs().max() <= 2**-7 * exact_weight.abs().max()  # bfloat16 rounding only
    x = torch.randn(3, blocks.shape[1])
    for rows in (x[:1], x, torch.randn(quant.DENSE_ROWS, blocks.shape[1])):  # kernel path and dense path
        exact = rows.bfloat16().float() @ weight.t()
        got = layer(rows).float()
        assert got.shape == exact.shape
        assert (got - exact).abs().max() <= 0.01 * exact.abs().max()


def test_q8_planes_compute_q8_0_as_stored(gguf):
    blocks = gguf.blocks("token_embd.weight")
    layer = quant.Q8Linear(blocks)
    x = torch.randn(2, blocks.shape[1]).bfloat16()
    exact = x.float() @ blocks.dequantize().t()
    got = layer(x).float()
    # bfloat16 output rounding, nothing more: the same size of error as a bfloat16 weight matrix
    dense = (x @ blocks.dequantize().bfloat16().t()).float()
    assert (got - exact).abs().max() <= 3 * (dense - exact).abs().max() + 1e-3


def test_quantize_int4_rounds_each_group_to_its_grid():
    weight = torch.randn(64, 96)
    codes, scale, zero = quant.quantize_int4(weight)
    rebuilt = ((codes.float() - 8).view(64, 3, 32) * scale[..., None] + zero[..., None]).view(64, 96)
    assert (rebuilt - weight).abs().view(64, 3, 32).amax(-1).le(scale / 2 + 1e-6).all()


def test_native_model_is_close_to_float32(smollm, smollm_native):
    assert smollm_native.precision == "native" and smollm.precision == "float32"
    ids = torch.tensor([smollm.tokenizer.encode("The capital of France is Paris. The capital of Italy is")])
    with torch.inference_mode():
        exact = smollm.model(ids).float().log_softmax(-1)
        native = smollm_native.model(ids).float().log_softmax(-1)
    kl = (exact.exp() * (exact - native)).sum(-1)  # (1, T)
    assert kl.mean() < 0.01
    assert (exact.argmax(-1) == native.argmax(-1)).float().mean() >= 0.9
    assert smollm_native.next_token_distribution("The capital of France is Paris. The capital of Italy is", top=1)[0].token == " Rome"


def test_native_decode_steps_match_a_full_pass(smollm_native):
    """The cached one-token path (the fused decode step, or rope as a matrix with pre-scaled queries)
    computes what the prompt path does."""
    model = smollm_native.model
    ids = torch.tensor([smollm_native.tokenizer.encode("One two three four five six")])
    with torch.inference_mode():
        full = model(ids).float()
        pool = model.new_kv_pool()
        pool.reserve(1, 16)
        model(ids[:, :3], cache=pool.prefill_view(0, 0, 3))
        steps = [model(ids[:, i : i + 1], cache=pool.decode_view([0], [i])).float() for i in range(3, ids.shape[1])]
    stepped, whole = torch.cat(steps, dim=1).log_softmax(-1), full[:, 3:].log_softmax(-1)
    # Products take bfloat16 inputs, so two orders of the same float32 arithmetic round a few
    # inputs differently and the difference grows over 30 layers: compare distributions, with
    # the bound native mode meets against float32 itself (its 99th-percentile KL is about 0.005).
    assert (whole.exp() * (whole - stepped)).sum(-1).max() < 0.01
    # the same choice wherever the full pass is not near a tie (its top two a nat or more apart):
    # 8-bit activations (the block kernels, as llama.cpp) may swap two tokens closer than that
    top2 = whole.topk(2, dim=-1).values
    clear = (top2[..., 0] - top2[..., 1]) >= 1.0
    assert clear.any() and torch.equal(stepped.argmax(-1)[clear], whole.argmax(-1)[clear])


def test_native_batch_generation_runs_and_stops(smollm_native):
    params = tl.SamplingParams(temperature=0, max_tokens=6)
    out = smollm_native.generate(["The capital of France is", "Hi"], params)
    assert [len(c.token_ids) for c in out] == [6, 6] and all(c.finish_reason == "length" for c in out)
    assert "Paris" in out[0].text


def test_auto_precision_is_native_for_gguf_only(tiny_llama_dir):
    assert tl.load(tiny_llama_dir).precision == "float32"
    with pytest.raises(InvalidArgument, match="native.*GGUF"):
        tl.load(tiny_llama_dir, precision="native")
    with pytest.raises(InvalidArgument, match="auto.*float32.*bfloat16.*native"):
        tl.load(tiny_llama_dir, precision="int3")


def test_native_model_refuses_to_be_saved(smollm_native, tmp_path):
    from tokenloom.model.loaders import save_checkpoint

    with pytest.raises(InvalidArgument, match="native precision.*float32"):
        save_checkpoint(tmp_path / "out", smollm_native.model, smollm_native.tokenizer)
    assert not (tmp_path / "out").exists()
