"""`tokenloom rag ingest/search/ask`: JSON that scripts rely on, one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tokenloom.app.cli import app

from .conftest import WordEmbedder


@pytest.fixture(autouse=True)
def fast_embedder(monkeypatch):
    import tokenloom.embed

    shared = WordEmbedder()
    monkeypatch.setattr(tokenloom.embed, "default_embedder", lambda: shared)


def run(*args):
    return CliRunner().invoke(app, list(map(str, args)))


def test_ingest_then_search_json(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("The zebra eats grass. Zebras live in Africa.")
    (tmp_path / "docs" / "b.md").write_text("# Trains\n\nTrains run on rails.")
    db = tmp_path / "s.db"
    result = run("rag", "ingest", tmp_path / "docs", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["added"]) == 2 and report["store"] == {"documents": 2, "chunks": 2}
    for mode in ("bm25", "dense", "hybrid"):
        result = run("rag", "search", 'where do "zebras" live?', "--db", db, "--mode", mode, "--k", "1", "--json")
        assert result.exit_code == 0, result.output
        hits = json.loads(result.stdout)
        assert len(hits) == 1 and hits[0]["title"] == "a" and hits[0]["rank"] == 1
        assert {"chunk_id", "document_id", "title", "text", "score", "rank"} <= set(hits[0])


def test_ingest_reports_a_bad_file_and_keeps_the_good_one(tmp_path):
    (tmp_path / "good.txt").write_text("Fine text.")
    (tmp_path / "bad.txt").write_bytes(b"\x00\x01")
    result = run("rag", "ingest", tmp_path / "bad.txt", tmp_path / "good.txt", "--db", tmp_path / "s.db", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["failed"][0]["path"].endswith("bad.txt") and report["added"][0].endswith("good.txt")


def test_errors_are_one_line_and_exit_2(tmp_path):
    env_run = lambda *a: subprocess.run([sys.executable, "-m", "tokenloom", *map(str, a)],  # noqa: E731
                                        capture_output=True, text=True, timeout=120)
    missing = env_run("rag", "search", "x", "--db", tmp_path / "none.db")
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "no such store" in missing.stderr
    (tmp_path / "a.txt").write_text("Some text.")
    db = tmp_path / "s.db"
    from tokenloom.rag.store import Store

    with Store(db, embedder=WordEmbedder()) as store:
        store.ingest([tmp_path / "a.txt"])
    bad_mode = env_run("rag", "search", "x", "--db", db, "--mode", "sparse")
    assert bad_mode.returncode == 2 and "bm25, dense, hybrid" in bad_mode.stderr.strip().splitlines()[-1]
    chat_spans = env_run("rag", "ask", "x", "--db", db, "--style", "chat", "--extractive")
    assert chat_spans.returncode == 2 and "extractive answers need style='short'" in chat_spans.stderr
    bad_sentences = env_run("rag", "ask", "x", "--db", db, "--sentences", "-2")
    assert bad_sentences.returncode == 2 and "sentences must be a whole number >= 0" in bad_sentences.stderr
