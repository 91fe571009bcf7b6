"""Where a model computes (model/device.py): the CPU, or a CUDA GPU when one is present.

The CUDA tests run the same assertions as the CPU ones on a GPU and skip, saying why,
where torch sees none (this project's own machines have none).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import tokenloom as tl
from tokenloom.errors import InvalidArgument
from tokenloom.model import device as devices

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch here")


def test_a_device_is_checked_before_anything_loads():
    assert devices.resolve(None) == torch.device("cpu") and devices.resolve("cpu") == torch.device("cpu")
    for bad in ("tpu", "cuda:x", 3.5):
        with pytest.raises(InvalidArgument, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
            devices.resolve(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the missing-GPU message cannot show")
def test_cuda_without_a_gpu_says_so_and_what_to_use():
    with pytest.raises(InvalidArgument, match=r"CUDA is not available here .*use device='cpu'"):
        tl.load("smollm2-135m-instruct", device="cuda")


def test_gguf_precision_on_cuda_is_bfloat16_and_native_is_refused():
    cuda = torch.device("cuda")  # a device object needs no GPU
    assert devices.precision_for(cuda, "auto", "gguf") == "bfloat16"
    assert devices.precision_for(cuda, "auto", "hf") == "auto"
    assert devices.precision_for(torch.device("cpu"), "auto", "gguf") == "auto"
    with pytest.raises(InvalidArgument, match="CPU kernels; on CUDA choose 'bfloat16' or 'float32'"):
        devices.precision_for(cuda, "native", "gguf")


def test_an_explicit_cpu_gives_what_the_default_gives(tiny_llama_dir):
    default, cpu = tl.load(tiny_llama_dir), tl.load(tiny_llama_dir, device="cpu")
    assert cpu.model.device == torch.device("cpu") and cpu.model.new_kv_pool().device == torch.device("cpu")
    params = tl.SamplingParams(temperature=0, max_tokens=6)
    assert cpu.generate("ab", params).token_ids == default.generate("ab", params).token_ids


@pytest.mark.parametrize("command", [["next", "hello"], ["serve", "--port", "0"]])
def test_the_cli_refuses_an_unknown_device_in_one_line(command):
    """The server too, before it listens: not a server that starts and never loads its model."""
    result = subprocess.run([sys.executable, "-m", "tokenloom", *command, "--device", "tpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "device must be 'cpu', 'cuda' or 'cuda:N'" in result.stderr
    assert "Traceback" not in result.stderr


# -- on a GPU --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def on_cuda():
    return tl.load("smollm2-135m-instruct", device="cuda")


@CUDA
def test_cuda_generates_scores_and_streams_like_the_cpu(on_cuda, smollm):
    lm = on_cuda
    assert lm.precision == "bfloat16" and lm.model.device.type == "cuda" and lm.model.fused_decoder is None
    params = tl.SamplingParams(temperature=0, max_tokens=4)
    assert "Paris" in lm.generate("The capital of France is", params).text
    assert "".join(lm.stream("The capital of France is", params)) == lm.generate("The capital of France is", params).text
    batch = lm.generate_batch([("Once upon a time", params), ("The river", params)])
    assert all(c.finish_reason in ("length", "eos") for c in batch)
    ids = lm.tokenizer.encode("The cat sat on the mat.")
    gpu, cpu = lm.logits(ids), smollm.logits(ids)
    assert gpu.device.type == "cpu" and gpu.shape == cpu.shape
    assert (gpu.argmax(-1) == cpu.argmax(-1)).float().mean() >= 0.8  # bfloat16 against float32


@CUDA
def test_cuda_perplexity_is_within_a_percent_of_float32_on_the_cpu(on_cuda, smollm):
    from tokenloom.eval.perplexity import perplexity

    text = "The quick brown fox jumps over the lazy dog. " * 20
    gpu, cpu = perplexity(on_cuda, text, context=64, stride=32), perplexity(smollm, text, context=64, stride=32)
    assert abs(gpu.perplexity / cpu.perplexity - 1) < 0.01
