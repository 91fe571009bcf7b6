"""The real pretrained model, loaded from its GGUF file, against `transformers` on the same file."""

import pytest
import torch

import tokenloom as tl

pytestmark = pytest.mark.slow

PROMPTS = [
    "The cat sat on the",
    "In 1492, Columbus sailed the ocean blue. Then",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Les élèves ont lu trois livres 📚 cette semaine.",
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_logits_match_transformers_on_the_same_gguf(smollm, hf_smollm, prompt):
    ids = smollm.tokenizer.encode(prompt)
    ours = smollm.logits(ids)
    with torch.no_grad():
        theirs = hf_smollm(torch.tensor([ids])).logits[0]
    assert ours.dtype == torch.float32 and ours.shape == (len(ids), 49152)
    assert (ours - theirs).abs().max().item() < 1e-3


def test_64_token_greedy_continuation_matches_transformers(smollm, hf_smollm):
    prompt = "The history of the printing press"
    ours = smollm.generate(prompt, tl.SamplingParams(temperature=0, max_tokens=64, ignore_eos=True))
    ids = torch.tensor([smollm.tokenizer.encode(prompt)])
    with torch.no_grad():
        out = hf_smollm.generate(ids, max_new_tokens=64, do_sample=False, eos_token_id=None, pad_token_id=2)
    assert ours.token_ids == out[0, ids.shape[1]:].tolist()
    assert len(ours.token_ids) == 64


def test_tokenizer_matches_transformers_on_ordinary_text(smollm):
    from transformers import AutoTokenizer

    from tokenloom.model.registry import resolve

    _, path = resolve("smollm2-135m-instruct")
    reference = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in PROMPTS + ["<|im_start|>user\nHi there<|im_end|>\n", "naïve café, 東京"]:
        assert smollm.tokenizer.encode(text) == reference(text)["input_ids"], text


@pytest.mark.parametrize(
    "text, pieces",
    [
        ("a  12", ["a", "ĠĠ", "1", "2"]),      # two spaces then digits: llama.cpp's smollm split
        ("x   7", ["x", "ĠĠĠ", "7"]),
        ("year 2024", ["year", "Ġ", "2", "0", "2", "4"]),
    ],
)
def test_digits_are_split_one_by_one_before_byte_level_bpe(smollm, text, pieces):
    """llama.cpp's `smollm` pre-tokenizer isolates every digit; transformers' GGUF conversion does not."""
    backend = smollm.tokenizer.backend
    assert [backend.id_to_token(i) for i in smollm.tokenizer.encode(text)] == pieces


def test_metadata_gives_eos_and_chat_template(smollm):
    tok = smollm.tokenizer
    assert tok.token_text(tok.eos_ids[0]) == "<|im_end|>"
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_next_token_distribution_is_sorted_and_sums_below_one(smollm):
    table = smollm.next_token_distribution("The cat sat on the", top=10)
    probs = [row.prob for row in table]
    assert len(table) == 10 and probs == sorted(probs, reverse=True)
    assert 0 < sum(probs) < 1
    assert table[0].token == " cat"


def test_bfloat16_stays_close_to_float32(smollm):
    lm16 = tl.load("smollm2-135m-instruct", precision="bfloat16")
    ids = smollm.tokenizer.encode(PROMPTS[0])
    p32 = torch.softmax(smollm.logits(ids)[-1], -1)
    p16 = torch.softmax(lm16.logits(ids)[-1], -1)
    assert p32.argmax() == p16.argmax()
    assert (p32 - p16).abs().sum().item() < 0.1


AVX2_BFLOAT16 = """
import logging, torch, tokenloom as tl
from tokenloom.model import kernels
logging.basicConfig(level=logging.WARNING)
assert not kernels.bfloat16_packing()
lm16 = tl.load("smollm2-135m-instruct", precision="bfloat16")
lm32 = tl.load("smollm2-135m-instruct", precision="float32")
ids = lm32.tokenizer.encode("The cat sat on the")
p16, p32 = (torch.softmax(lm.logits(ids)[-1], -1) for lm in (lm16, lm32))
assert p16.argmax() == p32.argmax() and (p16 - p32).abs().sum().item() < 0.1
out = lm16.generate("The cat", tl.SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
assert len(out.token_ids) == 4
print("ok")
"""


def test_bfloat16_works_where_onednn_has_only_avx2():
    """oneDNN limited to AVX2 (as on an AMD EPYC Zen 3) cannot pack bfloat16 weights: F.linear instead, one warning."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    run = subprocess.run([sys.executable, "-c", AVX2_BFLOAT16], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("ok")
    assert run.stderr.count("bfloat16 weights are not prepacked") == 1
