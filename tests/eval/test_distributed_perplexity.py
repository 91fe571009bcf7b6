"""Two processes under torch.distributed.run give the one-process perplexity, each on its share of the cores."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tokenloom.distributed import threads_per_process, usable_cores
from tokenloom.eval.perplexity import perplexity


@pytest.mark.slow
def test_two_ranks_equal_one_process(smollm, wiki_text, tmp_path, torchrun):
    text = wiki_text[:1200]
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    command = [*torchrun.command(2), "eval", "perplexity", str(path), "--context", "64", "--stride", "32",
               "--batch-size", "2", "--json"]
    # every rank starts with all cores' threads, as without torchrun's OMP_NUM_THREADS=1; the set-up shares them
    env = {**os.environ, "OMP_NUM_THREADS": str(usable_cores())}
    out = subprocess.run(command, capture_output=True, text=True, timeout=400, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert torchrun.threads_by_rank(out.stderr) == {0: threads_per_process(2), 1: threads_per_process(2)}, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only rank 0 prints
    two = json.loads(lines[0])
    one = perplexity(smollm, path, context=64, stride=32, batch_size=2)
    assert two["tokens"] == one.tokens > 200
    assert two["perplexity"] == pytest.approx(one.perplexity, rel=1e-6)
