"""Shared helpers of the human-evaluation tests: item files, simulated raters, servers."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tokenloom.human import RatingStore, StudySpec, parse_gold, parse_items

SRC = Path(__file__).resolve().parents[2] / "src"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
HOSTILE = [
    "<script>alert('x')</script>",
    "\"><img src=x onerror=alert(1)>",
    "'; DROP TABLE ratings; --",
    "Robert'); DELETE FROM studies WHERE ('1'='1",
    "{{ 7*7 }} {% raw %}",
    "Ã©Ã¨ â€™ mojibake \u202e RTL override \u0000 NUL \ufffd replacement",
    "=HYPERLINK(\"http://example.invalid\")",
    "x" * 50_000,
]


def item_rows(segments: int, systems=("alpha", "beta", "gamma"), reference: bool = True) -> list[tuple[str, dict]]:
    """(where, record) rows: every system's output for every segment."""
    rows = []
    for i in range(segments):
        for s in systems:
            record = {"id": f"q{i}", "prompt": f"Question {i}?", "system": s, "output": f"{s} says {i}"}
            if reference:
                record["reference"] = f"alpha says {i}"
            rows.append((f"items.jsonl:{len(rows) + 1}", record))
    return rows


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


def make_study(store: RatingStore, kind: str, name: str = "s", segments: int = 6, raters: int = 3, per_item: int = 2,
               criteria=(), systems=("alpha", "beta", "gamma"), gold=()):
    spec = StudySpec(name, kind, tuple(criteria), raters, per_item)
    checks = parse_gold([(f"gold:{k}", g) for k, g in enumerate(gold)], kind, spec.criteria) if gold else []
    return store.create_study(spec, parse_items(item_rows(segments, systems), kind), checks)


def simulate(store: RatingStore, created, answer) -> int:
    """Every rater answers every position: answer(rater, task, criterion) -> shown value. Returns ratings made."""
    made = 0
    for invitation in created.raters:
        rater = store.rater_by_token(invitation.token)
        while (position := store.next_position(rater)) is not None:
            task = store.task(rater, position, mark_shown=False)  # one transaction per rating, as a rater makes
            store.submit(rater, position, {c: answer(rater, task, c) for c in task.criteria})
            made += len(task.criteria)
    return made


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"server at {url} did not come up in {timeout} s")


def start_server(db: Path, port: int) -> subprocess.Popen:
    """`tokenloom human serve` in a subprocess (so that it can be SIGKILLed)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen([sys.executable, "-m", "tokenloom", "human", "serve", "--db", str(db),
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_up(f"http://127.0.0.1:{port}")
    return process


class ThreadServer:
    """uvicorn in a thread of this process, for tests that only need a real socket."""

    def __init__(self, db: Path):
        import uvicorn

        from tokenloom.human.web.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(db), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_up(self.url)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def store(tmp_path):
    with RatingStore(tmp_path / "ratings.db") as s:
        yield s


@pytest.fixture
def rng():
    return random.Random(0)
