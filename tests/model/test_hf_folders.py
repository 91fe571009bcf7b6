"""Hugging Face folders (tiny random Llama and GPT-2) load and match `transformers` to 1e-4."""

import pytest
import torch

import tokenloom as tl

transformers = pytest.importorskip("transformers")


def reference_logits(folder, ids):
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor(ids)).logits


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
@pytest.mark.parametrize("batch", [1, 3])
def test_logits_match_transformers(request, fixture, batch):
    folder = request.getfixturevalue(fixture)
    lm = tl.load(folder)
    ids = torch.randint(0, 320, (batch, 40), generator=torch.Generator().manual_seed(batch)).tolist()
    ours = lm.model(torch.tensor(ids)).detach()
    theirs = reference_logits(folder, ids)
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < 1e-4


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_greedy_continuation_matches_transformers(request, fixture):
    folder = request.getfixturevalue(fixture)
    lm = tl.load(folder)
    prompt = "The cat sat on"
    ours = lm.generate(prompt, tl.SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    ids = torch.tensor([lm.tokenizer.encode(prompt)])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert ours.token_ids == out[0, ids.shape[1]:].tolist()


def test_tiny_llama_config_is_read_from_config_json(tiny_llama_dir):
    lm = tl.load(tiny_llama_dir)
    c = lm.config
    assert (c.n_layers, c.n_heads, c.n_kv_heads, c.dim, c.hidden_dim) == (2, 4, 2, 64, 96)
    assert not c.tie_embeddings and c.positions == "rope" and c.norm == "rmsnorm"


def test_gpt2_config_picks_gpt2_parts(tiny_gpt2_dir):
    c = tl.load(tiny_gpt2_dir).config
    assert (c.positions, c.norm, c.mlp, c.bias) == ("learned", "layernorm", "gelu", True)
