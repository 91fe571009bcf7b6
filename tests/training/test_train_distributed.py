"""Two processes under torchrun (gloo) follow the single-process loss curve at the same global batch.

The windows of a step are drawn for the whole global batch (batch_size x grad_accum) and each
process trains on its share, so both runs see the same data; DDP averages the gradients as
accumulation does. Only the order of floating-point sums differs: the tolerance is 1e-4 nats.
Each process trains on its share of the cores (the set-up `tokenloom eval perplexity` uses too).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tokenloom.distributed import threads_per_process, usable_cores
from tokenloom.training.data import read_corpus

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4


def run(prefix: list[str], out: Path, corpus: Path) -> tuple[list[dict], str]:
    args = ["train", "--data", str(corpus), "--out", str(out), "--layers", "2", "--heads", "2", "--dim", "32",
            "--context", "16", "--batch-size", "4", "--grad-accum", "2", "--eval-batches", "4", "--steps", "12",
            "--eval-every", "4", "--lr", "1e-2", "--warmup", "2", "--seed", "3", "--no-compile", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": str(usable_cores())}  # each process starts with all cores' threads
    done = subprocess.run([*prefix, *args], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("12 steps: val loss") == 1  # only rank 0 reports
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()], done.stderr


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path, torchrun):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(read_corpus(None)[:30_000])
    single, _ = run([sys.executable, "-m", "tokenloom"], tmp_path / "one", corpus)
    double, stderr = run(torchrun.command(2), tmp_path / "two", corpus)
    assert torchrun.threads_by_rank(stderr) == {0: threads_per_process(2), 1: threads_per_process(2)}, stderr
    assert [e["step"] for e in double] == [e["step"] for e in single] == [0, 4, 8, 12]
    for a, b in zip(single, double):
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=TOLERANCE)
        if a["train_loss"] is not None:
            assert b["train_loss"] == pytest.approx(a["train_loss"], abs=TOLERANCE)
    assert single[-1]["val_loss"] < single[0]["val_loss"] - 0.3  # the curve being compared does move
    assert (tmp_path / "two" / "last" / "model.safetensors").exists()
