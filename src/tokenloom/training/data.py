"""Training data: text -> token ids on disk (memory-mapped) -> random windows.

The corpus is tokenized once into `<out>/data/{train,val}.bin` (uint16 or uint32 ids)
beside the tokenizer, so a resumed run, or every process of a distributed run, reads
the same ids without tokenizing again. The text is split before tokenizing, as nanoGPT
does: the first (1 - val_fraction) of the characters is the training split.

Windows: a window starting at s gives inputs ids[s : s+T] and targets ids[s+1 : s+T+1]
(teacher forcing). Training windows are drawn by one seeded `torch.Generator` for the
whole global batch, and each process takes its own rows, so the data order depends on
the seed only, not on the number of processes, and the generator state is part of a
checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from tokenloom.errors import InvalidArgument
from tokenloom.tokenizer import SpecialTokens, Tokenizer

CACHE_VERSION = 1


# -- the corpus ----------------------------------------------------------------
def default_corpus() -> Path:
    """Tiny Shakespeare, shipped inside the package."""
    return Path(str(resources.files("tokenloom") / "data" / "tiny_shakespeare.txt"))


def read_corpus(data: str | None) -> str:
    """The text of a file, or of every *.txt in a folder (sorted by name, joined by a blank line)."""
    path = Path(data).expanduser() if data else default_corpus()
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise InvalidArgument(f"data folder {path} holds no *.txt file; give a text file or a folder of them")
        return "\n\n".join(f.read_text(encoding="utf-8") for f in files)
    if not path.is_file():
        raise InvalidArgument(f"data {str(path)!r} does not exist; give a text file or a folder of *.txt files")
    return path.read_text(encoding="utf-8")


# -- tokenizers trained on the corpus --------------------------------------------
def char_tokenizer(text: str) -> Tokenizer:
    """One token per character, ids in sorted character order (nanoGPT's `stoi`).

    "First" -> [18, 47, 56, 57, 58] on Tiny Shakespeare. A character that is not in the
    corpus encodes as id 0.
    """
    chars = sorted(set(text))
    if not chars:
        raise InvalidArgument("the training text is empty")
    backend = HFTokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token=chars[0]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return Tokenizer(backend, SpecialTokens())


def bpe_tokenizer(text: str, vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 style) trained on the corpus, with one `<|endoftext|>` token."""
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(text.splitlines(keepends=True), trainer)
    return Tokenizer(backend, SpecialTokens(eos_ids=(0,)))


def corpus_tokenizer(text: str, bpe_vocab: int | None) -> Tokenizer:
    return char_tokenizer(text) if bpe_vocab is None else bpe_tokenizer(text, bpe_vocab)


# -- the token cache --------------------------------------------------------------
def fingerprint(text: str, tokenizer_spec: str, val_fraction: float) -> str:
    digest = hashlib.sha256(text.encode("utf-8"))
    digest.update(f"|{tokenizer_spec}|{val_fraction}|{CACHE_VERSION}".encode())
    return digest.hexdigest()


def write_ids(path: Path, ids: list[int], vocab_size: int) -> None:
    dtype = np.uint16 if vocab_size <= 65536 else np.uint32
    array = np.asarray(ids, dtype=dtype)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(array.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def prepare_data(folder: Path, text: str, tokenizer: Tokenizer, tokenizer_spec: str, val_fraction: float) -> None:
    """Tokenize `text` into folder/{train,val}.bin and save the tokenizer, unless already there."""
    key = fingerprint(text, tokenizer_spec, val_fraction)
    meta_path = folder / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") == key:
        return
    folder.mkdir(parents=True, exist_ok=True)
    cut = int(len(text) * (1.0 - val_fraction))
    parts = {"train": tokenizer.encode(text[:cut], add_bos=False), "val": tokenizer.encode(text[cut:], add_bos=False)}
    for split, ids in parts.items():
        write_ids(folder / f"{split}.bin", ids, tokenizer.vocab_size)
    tokenizer.save(folder)
    meta = {"fingerprint": key, "vocab_size": tokenizer.vocab_size, "tokenizer": tokenizer_spec,
            "dtype": "uint16" if tokenizer.vocab_size <= 65536 else "uint32",
            "tokens": {split: len(ids) for split, ids in parts.items()}}
    meta_path.write_text(json.dumps(meta, indent=2))


@dataclass
class TokenData:
    """The memory-mapped splits of a prepared data folder."""

    train: np.ndarray
    val: np.ndarray
    tokenizer: Tokenizer

    @classmethod
    def open(cls, folder: Path) -> "TokenData":
        meta = json.loads((folder / "meta.json").read_text())
        dtype = np.dtype(meta["dtype"])
        splits = {s: np.memmap(folder / f"{s}.bin", dtype=dtype, mode="r") for s in ("train", "val")}
        return cls(splits["train"], splits["val"], Tokenizer.load(folder))

    def check_context(self, context: int) -> None:
        for name, ids in (("train", self.train), ("val", self.val)):
            if len(ids) < context + 2:
                raise InvalidArgument(
                    f"the {name} split has {len(ids)} tokens, fewer than context + 2 = {context + 2}; "
                    "give more text or a smaller --context"
                )


def windows(ids: np.ndarray, starts: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (B, T) for the windows starting at `starts` (B,)."""
    index = starts.numpy()[:, None] + np.arange(context + 1)  # (B, T+1)
    chunk = torch.from_numpy(ids[index].astype(np.int64))  # (B, T+1)
    return chunk[:, :-1], chunk[:, 1:]


class WindowSampler:
    """Random window starts, uniform over the split, from a seeded generator.

    `draw(n)` gives n starts in [0, len(ids) - T - 1]; the generator's state can be saved
    and restored, so a resumed run draws exactly the windows it would have drawn.
    """

    def __init__(self, n_tokens: int, context: int, seed: int):
        self.high = n_tokens - context  # exclusive bound: the last target must exist
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, n: int) -> torch.Tensor:
        return torch.randint(0, self.high, (n,), generator=self.generator)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
