"""`tokenloom train` as a user runs it: bad options, and SIGKILL + --resume giving identical weights."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

import torch

from tokenloom.training.data import read_corpus

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--layers", "2", "--heads", "2", "--dim", "32", "--context", "16", "--batch-size", "4",
        "--eval-batches", "2", "--no-compile", "--quiet"]


def tokenloom(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tokenloom", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, **kwargs)


@pytest.mark.parametrize("args, fragment", [
    (["--layers", "0"], "layers must be a positive integer"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--tokenizer", "bpe:12"], "'char' or 'bpe:VOCAB'"),
    (["--resume"], "holds no checkpoint"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, args, fragment):
    done = tokenloom("train", "--out", str(tmp_path / "run"), *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokenloom: error:") and fragment in lines[0], done.stderr


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "last" / "model.safetensors"))


def checkpoint_step(out: Path) -> int:
    last = out / "last"
    return int(last.resolve().name.split("-")[1]) if last.is_symlink() else 0


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_bit_identical_weights(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(read_corpus(None)[:30_000])
    args = ["train", "--data", str(corpus), *TINY, "--steps", "40", "--eval-every", "8", "--checkpoint-every", "3",
            "--seed", "5", "--warmup", "4", "--dropout", "0.1"]
    whole = tokenloom(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "killed"
    kill_after = random.Random(os.getpid()).randrange(3, 34)
    proc = subprocess.Popen([sys.executable, "-m", "tokenloom", *args, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while checkpoint_step(out) < kill_after and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint_step(out)
    assert 3 <= killed_at < 40, f"the kill came at step {killed_at}; the test needs a run cut short"

    resumed = tokenloom("train", "--resume", "--out", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(tmp_path / "whole"), weights(out)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resuming from step {killed_at}"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["val_loss"]) for m in metrics] == [(m["step"], m["val_loss"]) for m in expected]


def test_resume_refuses_changed_settings(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(read_corpus(None)[:5_000])
    first = tokenloom("train", "--data", str(corpus), *TINY, "--steps", "2", "--eval-every", "2",
                      "--out", str(tmp_path / "run"))
    assert first.returncode == 0, first.stderr
    assert "2 steps: val loss" in first.stdout
    again = tokenloom("train", "--resume", "--out", str(tmp_path / "run"), "--lr", "0.5")
    assert again.returncode == 2 and "['lr']" in again.stderr
