"""tokenloom's CPU kernels (attention, SwiGLU) against PyTorch in float64, and the model with and without them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tokenloom.model import native
from tokenloom.model.config import ModelConfig
from tokenloom.model.transformer import Transformer

needs_kernel = pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() != "AVX512", reason="the kernel is written for AVX-512 CPUs"
)


def reference(q, k, v, scale):
    """Float64 attention in which the T queries are the last T of S positions."""
    T, S = q.shape[2], k.shape[2]
    groups = q.shape[1] // k.shape[1]
    allowed = torch.arange(S)[None, :] <= torch.arange(S - T, S)[:, None]  # (T, S)
    k, v = k.double().repeat_interleave(groups, 1), v.double().repeat_interleave(groups, 1)
    return F.scaled_dot_product_attention(q.double(), k, v, attn_mask=allowed, scale=scale)


@needs_kernel
def test_the_kernel_builds_on_this_machine():
    # CI runs on AVX-512 machines with a C compiler: a silent fallback there would hide a broken build.
    assert native.available()


@needs_kernel
@pytest.mark.parametrize(
    "B, H, Hkv, T, S, D",
    [
        (1, 9, 3, 300, 300, 64),  # SmolLM2's heads; T neither a multiple of 48 nor of 64
        (2, 4, 4, 64, 64, 64),  # no grouping, the shortest window the model sends
        (3, 8, 2, 97, 250, 64),  # the last 97 of 250 positions (a prompt after a cache)
        (2, 8, 2, 130, 130, 128),  # D = 128
        (1, 6, 1, 1, 65, 64),  # one query, keys past one block
    ],
)
def test_kernel_equals_float64_attention(B, H, Hkv, T, S, D):
    gen = torch.Generator().manual_seed(T * S + D)
    qkv = torch.randn(B, T, H + 2 * Hkv, D, generator=gen) * 2  # strided views, as the model passes them
    q = qkv[:, :, :H].transpose(1, 2)  # (B, H, T, D)
    k = torch.randn(B, Hkv, S, D, generator=gen) * 2
    v = torch.randn(B, Hkv, S, D, generator=gen)
    scale = 1 / math.sqrt(D)
    out = native.causal_attention(q, k, v, scale)
    assert out.shape == (B, H, T, D)
    expected = reference(q, k, v, scale)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)
    # and about as close as PyTorch's own float32 kernel gets
    theirs = F.scaled_dot_product_attention(
        q, k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1),
        attn_mask=torch.arange(S)[None, :] <= torch.arange(S - T, S)[:, None], scale=scale,
    )
    assert (out.double() - expected).abs().max() <= 2 * (theirs.double() - expected).abs().max() + 1e-6


@needs_kernel
def test_kernel_rejects_what_it_was_not_written_for():
    q, k = torch.randn(1, 4, 8, 32), torch.randn(1, 2, 8, 32)
    with pytest.raises(ValueError, match="D in"):
        native.causal_attention(q, k, k, 0.1)
    q = torch.randn(1, 4, 8, 64)
    with pytest.raises(ValueError, match="S ≥ T"):
        native.causal_attention(q, torch.randn(1, 2, 4, 64), torch.randn(1, 2, 4, 64), 0.1)


def test_a_failed_build_falls_back_to_pytorch(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a compiler that always fails
    assert native._build() is None
    assert list((tmp_path / "tokenloom").glob("*")) == []  # no half-built library left behind


def test_an_unwritable_cache_falls_back_to_pytorch(monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # the cache cannot be made under a file
    assert native._build() is None


def tiny_model(head_dim: int = 64) -> Transformer:
    config = ModelConfig(vocab_size=300, dim=4 * head_dim, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=200,
                         max_seq_len=512)
    model = Transformer(config)
    model.init_weights(seed=0)
    return model.eval()


@needs_kernel
def test_model_gives_the_same_logits_with_and_without_the_kernel(monkeypatch):
    model = tiny_model()
    ids = torch.randint(0, 300, (2, 200), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        fast = model(ids)
        monkeypatch.setenv("TOKENLOOM_NATIVE_KERNELS", "0")
        assert not native.available()
        slow = model(ids)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kernel", ["1", "0"])
def test_hidden_keep_equals_the_last_positions_of_the_full_pass(monkeypatch, kernel):
    monkeypatch.setenv("TOKENLOOM_NATIVE_KERNELS", kernel)
    model = tiny_model()
    ids = torch.randint(0, 300, (2, 150), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        full = model.hidden(ids)  # (B, T, C)
        for keep in (1, 37, 150):
            torch.testing.assert_close(model.hidden(ids, keep=keep), full[:, -keep:], rtol=0, atol=1e-5)
        # with a cache, as prefill runs it: the last position only, every key still cached
        pool = model.new_kv_pool()
        pool.reserve(1, 160)
        trimmed = model.hidden(ids[:1], cache=pool.prefill_view(0, 0, 150), keep=1)
        torch.testing.assert_close(trimmed, full[:1, -1:], rtol=0, atol=1e-5)
        assert pool.k[-1][0, :, :150].abs().sum(-1).gt(0).all()  # the last block cached every position's key


@needs_kernel
@pytest.mark.parametrize("shape", [(3, 70, 2 * 1536), (130, 64)])
def test_swiglu_equals_silu_times_up(shape):
    h = torch.randn(*shape, generator=torch.Generator().manual_seed(3)) * 6
    h[..., 0] = torch.tensor([-200.0, 200.0, 0.0]).repeat(h[..., 0].numel() // 3 + 1)[: h[..., 0].numel()].view(h[..., 0].shape)
    gate, up = h.chunk(2, dim=-1)
    expected = (F.silu(gate.double()) * up.double())
    out = native.swiglu(h)
    assert out.shape == gate.shape
    torch.testing.assert_close(out.double(), expected, rtol=2e-6, atol=1e-6)  # float32 rounding, both factors


@needs_kernel
def test_swiglu_rejects_widths_it_was_not_written_for():
    with pytest.raises(ValueError, match="multiple of 16"):
        native.swiglu(torch.randn(70, 40))


@needs_kernel
def test_rms_norm_equals_float64_on_the_tail_of_longer_sequences():
    gen = torch.Generator().manual_seed(4)
    longer = torch.randn(3, 90, 576, generator=gen) * 5
    x = longer[:, 20:]  # (3, 70, 576): rows contiguous, sequences 90 rows apart, as Block passes them
    w = torch.rand(576, generator=gen) + 0.5
    expected = F.rms_norm(x.double(), (576,), w.double(), 1e-5)
    torch.testing.assert_close(native.rms_norm(x, w, 1e-5).double(), expected, rtol=1e-6, atol=1e-6)
    h = torch.randn(3, 70, 576, generator=gen)
    total, normed = native.add_rms_norm(x, h, w, 1e-5)
    assert torch.equal(total, x + h)  # one float32 add, as PyTorch rounds it
    expected = F.rms_norm((x + h).double(), (576,), w.double(), 1e-5)
    torch.testing.assert_close(normed.double(), expected, rtol=1e-6, atol=1e-6)


@needs_kernel
def test_rms_norm_rejects_what_it_was_not_written_for():
    with pytest.raises(ValueError, match="multiple of 16"):
        native.rms_norm(torch.randn(1, 80, 40), torch.ones(40), 1e-5)
    with pytest.raises(ValueError, match="residual like x"):
        native.add_rms_norm(torch.randn(1, 80, 64), torch.randn(1, 79, 64), torch.ones(64), 1e-5)
    with pytest.raises(ValueError, match="weight of C"):
        native.rms_norm(torch.randn(1, 80, 64), torch.ones(32), 1e-5)


@needs_kernel
@pytest.mark.parametrize("B, tables", [(2, 2), (3, 1)])  # a table per sequence (padded batches), or one shared
def test_rope_equals_float64_rotation(B, tables):
    from tokenloom.model.transformer import rope_tables

    config = ModelConfig(vocab_size=10, dim=576, n_layers=1, n_heads=9, n_kv_heads=3, hidden_dim=64)
    cos, sin = rope_tables(config, 200)
    positions = torch.stack([torch.arange(100) + 7 * b for b in range(tables)])  # (tables, T)
    cos, sin = cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)  # (tables, 1, T, D)
    heads = torch.randn(B, 100, 15, 64, generator=torch.Generator().manual_seed(5)).transpose(1, 2)[:, :12]
    x, c, s = heads.double(), cos.double(), sin.double()
    expected = x * c + torch.cat([-x[..., 32:], x[..., :32]], dim=-1) * s
    out = native.rope(heads, cos, sin)
    assert out.shape == (B, 12, 100, 64) and out.is_contiguous()
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 32"):
        native.rope(torch.randn(1, 2, 100, 48), torch.randn(1, 1, 100, 48), torch.randn(1, 1, 100, 48))


@needs_kernel
@pytest.mark.parametrize("V", [49152, 1, 17, 100])  # SmolLM2's vocabulary, and widths that end mid-vector
def test_logsumexp_equals_float64(V):
    x = torch.randn(6, V, generator=torch.Generator().manual_seed(V)) * 6
    expected = torch.logsumexp(x.double(), -1)
    out = native.logsumexp(x)
    torch.testing.assert_close(out.double(), expected, rtol=2e-7, atol=1e-7)  # float32 rounding of the result
    if V == 49152:  # no drift from summing 49,152 small terms: closer than PyTorch's own float32 result
        assert (out.double() - expected).abs().mean() <= (torch.logsumexp(x, -1).double() - expected).abs().mean() + 1e-7


@needs_kernel
def test_logsumexp_keeps_nan_and_infinities():
    x = torch.randn(4, 70)
    x[0, 3], x[1], x[2, 5] = float("nan"), float("-inf"), float("inf")
    out = native.logsumexp(x)
    assert out[0].isnan() and out[1] == float("-inf") and out[2] == float("inf")
    torch.testing.assert_close(out[3], torch.logsumexp(x[3], -1))
