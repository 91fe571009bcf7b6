"""Checkpoints are written atomically: a crash or SIGKILL at any moment leaves `last` complete."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import tokenloom as tl
from tokenloom.training import checkpoint
from tokenloom.training.data import char_tokenizer
from tokenloom.training.trainer import build_model, make_optimizer
from tokenloom.training.config import TrainConfig

TINY = TrainConfig(layers=1, heads=2, dim=16, context=8)


def tiny_model(fill: float):
    model = build_model(TINY, vocab_size=5)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(fill)
    return model


def write(out: Path, step: int, links=("last",)) -> Path:
    model = tiny_model(float(step))
    state = {"step": step, "optimizer": make_optimizer(model, TINY).state_dict()}
    return checkpoint.write_checkpoint(out, step, model, char_tokenizer("abcde"), state, TINY.to_dict(), links)


def test_checkpoint_is_a_loadable_model_folder_with_training_state(tmp_path):
    folder = write(tmp_path, 3, links=("last", "best"))
    assert checkpoint.latest(tmp_path) == folder == (tmp_path / "best").resolve()
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "training_state.pt", "train_config.json"} <= names
    lm = tl.load(tmp_path / "last")
    assert torch.all(lm.model.embed.weight == 3.0)
    assert checkpoint.read_config(folder)["dim"] == 16


def test_older_checkpoints_are_pruned_but_best_is_kept(tmp_path):
    write(tmp_path, 1, links=("last", "best"))
    write(tmp_path, 2)
    write(tmp_path, 3)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-0000001", "step-0000003"]


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    write(tmp_path, 1)
    real_save = torch.save

    def crash_after_optimizer(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(torch, "save", crash_after_optimizer)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, 2)
    monkeypatch.undo()
    assert checkpoint.latest(tmp_path).name == "step-0000001"
    monkeypatch.setattr(checkpoint, "point", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, 2)
    monkeypatch.undo()
    assert checkpoint.latest(tmp_path).name == "step-0000001"
    assert torch.all(tl.load(tmp_path / "last").model.embed.weight == 1.0)
    checkpoint.prune(tmp_path)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-0000001"]
    write(tmp_path, 2)  # the same step again after the crash: the leftover name is reused
    assert checkpoint.latest(tmp_path).name == "step-0000002"


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {here!r})
    from test_checkpoint_atomic import write
    out = Path(sys.argv[1])
    for step in range(1, 10_000):
        write(out, step)
        print(step, flush=True)
""")


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_a_half_written_last(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(here=str(Path(__file__).parent)))
    out, rng = tmp_path / "run", random.Random(1234)
    for trial in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one checkpoint exists
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        folder = checkpoint.latest(out)
        step = torch.load(folder / checkpoint.STATE_FILE, weights_only=True)["step"]
        assert folder.name.startswith(f"step-{step:07d}")
        lm = tl.load(out / "last")
        assert torch.all(lm.model.embed.weight == float(step)), f"trial {trial}: weights of another step"
        checkpoint.prune(out)
        assert [p.name for p in (out / "checkpoints").iterdir()] == [folder.name]
