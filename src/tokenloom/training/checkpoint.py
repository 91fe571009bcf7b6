"""Checkpoints that survive a kill at any moment.

A run folder looks like this:

    out/
      last -> checkpoints/step-0000500     (symbolic links, swapped atomically)
      best -> checkpoints/step-0000250
      checkpoints/step-0000250/  step-0000500/
      data/  metrics.jsonl  loss.png

Each checkpoint folder is a tokenloom model folder (config.json, model.safetensors,
tokenizer.json, tokenizer_meta.json: `tokenloom.load("out/last")` reads it) plus
`training_state.pt` (step, optimizer, data-order and RNG state) and `train_config.json`.

Writing one: fill `checkpoints/.tmp-...`, fsync every file and the folder, rename it to
`checkpoints/step-N`, then point `last` at it by creating a new link and `os.replace`-ing
it over the old one (a single atomic rename). Whenever the process dies, `last` names a
complete folder: the new one or the previous one. Folders no link names are removed
afterwards, and on the next start.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.model.loaders import save_checkpoint
from tokenloom.model.transformer import Transformer
from tokenloom.tokenizer import Tokenizer

STATE_FILE = "training_state.pt"
CONFIG_FILE = "train_config.json"
LINKS = ("last", "best")


def fsync_path(path: Path) -> None:
    """Flush a file or a folder (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(out: Path, step: int, model: Transformer, tokenizer: Tokenizer, state: dict,
                     config: dict, links: tuple[str, ...] = ("last",)) -> Path:
    """Write a complete checkpoint for `step` and point each of `links` at it (atomically)."""
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-step-{step:07d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, model, tokenizer)
    torch.save(state, tmp / STATE_FILE)
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    for path in tmp.iterdir():
        fsync_path(path)
    fsync_path(tmp)
    final = free_name(root, f"step-{step:07d}", out)
    os.rename(tmp, final)
    fsync_path(root)
    for name in links:
        point(out, name, final)
    prune(out)
    return final


def free_name(root: Path, name: str, out: Path) -> Path:
    """root/name, cleared if a killed run left it unreferenced; a fresh suffix if a link uses it."""
    candidate, n = root / name, 1
    while candidate.exists():
        if candidate.resolve() not in linked(out):
            shutil.rmtree(candidate)
            break
        candidate, n = root / f"{name}-{n}", n + 1
    return candidate


def point(out: Path, name: str, target: Path) -> None:
    """Make out/name a link to target, replacing the old link in one rename."""
    tmp = out / f".{name}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, out), tmp)
    os.replace(tmp, out / name)
    fsync_path(out)


def linked(out: Path) -> set[Path]:
    return {(out / name).resolve() for name in LINKS if (out / name).is_symlink()}


def prune(out: Path) -> None:
    """Remove checkpoint folders that no link names (older steps, leftovers of a killed write)."""
    root = out / "checkpoints"
    if not root.is_dir():
        return
    keep = linked(out)
    for folder in root.iterdir():
        if folder.resolve() not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def latest(out: Path) -> Path | None:
    """The folder `out/last` names, or None when the run has no checkpoint yet."""
    last = out / "last"
    return last.resolve() if last.is_symlink() and last.resolve().is_dir() else None


def read_config(folder: Path) -> dict:
    return json.loads((folder / CONFIG_FILE).read_text())


def read_state(folder: Path, model: Transformer) -> dict:
    """Load the weights of `folder` into `model` (in place) and return the training state."""
    from safetensors.torch import load_file

    weights = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise InvalidArgument(f"{folder}: weights do not match the model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    return torch.load(folder / STATE_FILE, weights_only=True)
