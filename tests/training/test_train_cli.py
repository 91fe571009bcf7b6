"""`tokenloom train` as a user runs it: bad options, reproducible seeded runs, and SIGKILL + --resume.

The kill-and-resume tests train the default preset as users get it, compiled, with a few
steps only; one straight run (module fixture) is the reference of both slow tests.
"""

import hashlib
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


def sha256(out: Path) -> str:
    return hashlib.sha256((out / "last" / "model.safetensors").read_bytes()).hexdigest()


def metrics(out: Path) -> list[tuple[int, float]]:
    return [(m["step"], m["val_loss"]) for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]


# The default preset (compiled), cut to 12 steps with a checkpoint every 2; fewer validation
# batches than the preset's 200 only make each evaluation cheaper: they change no weight.
PRESET_RUN = ["train", "--steps", "12", "--eval-every", "4", "--checkpoint-every", "2", "--eval-batches", "4",
              "--seed", "7", "--quiet"]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    done = tokenloom(*PRESET_RUN, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "compiled in" in done.stdout  # the preset trains through torch.compile
    return out


@pytest.mark.slow
def test_two_compiled_runs_with_one_seed_end_with_identical_weights(straight_run, tmp_path):
    again = tokenloom(*PRESET_RUN, "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert sha256(tmp_path / "again") == sha256(straight_run)
    assert metrics(tmp_path / "again") == metrics(straight_run)


def start(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tokenloom", *PRESET_RUN, "--resume", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_when(proc: subprocess.Popen, ready) -> None:
    while not ready() and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkill_before_and_after_a_checkpoint_then_resume_ends_with_the_straight_weights(straight_run, tmp_path):
    """A job scheduler's story: the same `--resume` command line, killed twice, run a third time.

    The first kill comes before any checkpoint (while the model compiles); the second after
    a checkpoint at a random step.
    """
    out = tmp_path / "killed"
    kill_when(start(out), lambda: (out / "data" / "meta.json").exists())
    assert checkpoint_step(out) == 0, "the first kill came after a checkpoint; the test needs one before"

    kill_after = random.Random(os.getpid()).randrange(2, 11)
    kill_when(start(out), lambda: checkpoint_step(out) >= kill_after)
    killed_at = checkpoint_step(out)
    assert 2 <= killed_at < 12, f"the kill came at step {killed_at}; the test needs a run cut short"

    resumed = tokenloom(*PRESET_RUN, "--resume", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(straight_run), weights(out)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resuming from step {killed_at}"
    assert metrics(out) == metrics(straight_run)


def test_resume_without_a_checkpoint_starts_from_step_0_and_says_so(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(read_corpus(None)[:5_000])
    args = ["train", "--data", str(corpus), *TINY, "--steps", "2", "--eval-every", "2"]
    out = tmp_path / "run"
    (out / "checkpoints" / ".tmp-step-0000002-1").mkdir(parents=True)  # what a kill mid-write leaves
    (out / "metrics.jsonl").write_text('{"step": 0, "train_loss": null, "val_loss": 9.9}\n{"st')
    done = tokenloom(*args, "--resume", "--out", str(out))
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "checkpoint" in line]
    assert notes == [f"--resume: {out} holds no checkpoint yet; starting from step 0"], done.stderr
    assert [step for step, _ in metrics(out)] == [0, 2] and checkpoint_step(out) == 2
    assert not (out / "checkpoints" / ".tmp-step-0000002-1").exists()


def test_resume_refuses_changed_settings(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(read_corpus(None)[:5_000])
    first = tokenloom("train", "--data", str(corpus), *TINY, "--steps", "2", "--eval-every", "2",
                      "--out", str(tmp_path / "run"))
    assert first.returncode == 0, first.stderr
    assert "2 steps: val loss" in first.stdout
    again = tokenloom("train", "--resume", "--out", str(tmp_path / "run"), "--lr", "0.5")
    assert again.returncode == 2 and "['lr']" in again.stderr
