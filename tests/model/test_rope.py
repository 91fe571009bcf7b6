"""Rotary positions: the mode of a pass's `Rope` is named, and both modes give transformers' logits."""

import pytest
import torch

import tokenloom as tl
from tokenloom.model.config import ModelConfig
from tokenloom.model.rope import Rope, rope_matrices, rope_tables
from tokenloom.model.transformer import Attention

transformers = pytest.importorskip("transformers")
CONFIG = ModelConfig(vocab_size=16, dim=64, n_layers=1, n_heads=4, n_kv_heads=2, hidden_dim=96, max_seq_len=32)


def test_rotation_matrices_and_angles_give_the_same_attention():
    # one position: the pre-scaled matrices must equal turning by cos/sin and scaling by 1/√D after
    torch.manual_seed(0)
    attn = Attention(CONFIG).eval()
    cos, sin = rope_tables(CONFIG, 32)
    positions = torch.tensor([3, 17])
    x = torch.randn(2, 1, 64)  # (B, T=1, C)
    angles = Rope.angles(cos[positions][:, None, None], sin[positions][:, None, None])  # (B, 1, 1, D)
    matrices = Rope.rotations(rope_matrices(cos[positions], sin[positions], 4, 2))  # (B, H + Hkv, D, D)
    assert not angles.prescaled and matrices.prescaled
    with torch.no_grad():
        torch.testing.assert_close(attn(x, matrices, None), attn(x, angles, None), rtol=1e-5, atol=1e-6)


def test_attention_refuses_a_mode_it_does_not_read():
    cos, sin = rope_tables(CONFIG, 32)
    with pytest.raises(ValueError, match="Rope mode 'angles' or 'matrices', got 'tables'"):
        Attention(CONFIG)(torch.randn(1, 2, 64), Rope.tables(cos, sin), None)


def test_the_model_hands_attention_angles_for_prompts_and_matrices_for_one_position(tiny_llama_dir, monkeypatch):
    lm = tl.load(tiny_llama_dir)
    modes = []
    forward = Attention.forward

    def recording(self, x, rope, *rest):
        modes.append(rope.mode)
        return forward(self, x, rope, *rest)

    monkeypatch.setattr(Attention, "forward", recording)
    prompt = lm.tokenizer.encode("The cat sat on the mat")
    pool = lm.model.new_kv_pool()
    pool.reserve(2, len(prompt) + 1)
    with torch.inference_mode():
        lm.engine.prefill(pool, 0, prompt, 0)
        lm.engine.prefill(pool, 1, prompt[:3], 0)
        assert set(modes) == {"angles"}
        modes.clear()
        step = lm.engine.decode(pool, [0, 1], [len(prompt), 3], [prompt[-1], prompt[3]])  # (2, V)
    assert set(modes) == {"matrices"} and len(modes) == lm.model.config.n_layers
    # the decode step's logits are transformers' at those positions
    peer = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        long = peer(torch.tensor([prompt + [prompt[-1]]])).logits[0, -1]
        short = peer(torch.tensor([prompt[:4]])).logits[0, -1]
    torch.testing.assert_close(step, torch.stack([long, short]), rtol=0, atol=1e-4)
