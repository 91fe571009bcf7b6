"""Two processes under torch.distributed.run give the one-process perplexity."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tokenloom.eval.perplexity import perplexity


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_equal_one_process(smollm, wiki_text, tmp_path):
    text = wiki_text[:1200]
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
        "-m", "tokenloom", "eval", "perplexity", str(path), "--context", "64", "--stride", "32",
        "--batch-size", "2", "--json",
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only rank 0 prints
    two = json.loads(lines[0])
    one = perplexity(smollm, path, context=64, stride=32, batch_size=2)
    assert two["tokens"] == one.tokens > 200
    assert two["perplexity"] == pytest.approx(one.perplexity, rel=1e-6)
