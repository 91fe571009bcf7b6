"""Store: schema version, WAL, re-ingest, bad files, atomic files, FTS5 escaping, RRF, dense order."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tokenloom.rag.fusion import reciprocal_rank_fusion
from tokenloom.rag.readers import Document
from tokenloom.rag.store import SCHEMA_VERSION, Store, StoreError, fts_query

SRC = Path(__file__).resolve().parents[2] / "src"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_new_store_has_the_schema_version_and_wal(store):
    assert store.schema_version == SCHEMA_VERSION
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_store_with_a_newer_schema_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "new.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*up to {SCHEMA_VERSION}"):
        Store(tmp_path / "new.db")


def test_reingesting_a_file_replaces_its_chunks(store, tmp_path):
    path = write(tmp_path, "a.txt", "The cat sat on the mat. It was warm.")
    first = store.ingest([path])
    assert first.added == [str(path)] and store.counts() == {"documents": 1, "chunks": 1}
    assert store.ingest([path]).unchanged == [str(path)]
    write(tmp_path, "a.txt", "Dogs bark at night. " * 100)
    again = store.ingest([path])
    assert again.replaced == [str(path)]
    counts = store.counts()
    assert counts["documents"] == 1 and counts["chunks"] == again.chunks > 1
    fts_rows = store.db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
    assert fts_rows == counts["chunks"]
    assert store.search("cat mat", mode="bm25") == []


def test_a_bad_file_is_reported_and_the_others_ingested(store, tmp_path):
    good = write(tmp_path, "good.md", "# Title\n\nGood text here.")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02binary")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    bad_json = write(tmp_path, "rows.jsonl", '{"text": "fine"}\nnot json\n')
    report = store.ingest([binary, good, latin, bad_json, tmp_path / "missing.txt", tmp_path / "x.pdf"])
    assert report.added == [str(good)]
    reasons = dict(report.failed)
    assert "binary" in reasons[str(binary)] and "UTF-8" in reasons[str(latin)]
    assert "line 2: not JSON" in reasons[str(bad_json)] and "cannot read" in reasons[str(tmp_path / "missing.txt")]
    assert "unknown kind" in reasons[str(tmp_path / "x.pdf")]


def test_html_and_jsonl_documents(store, tmp_path):
    html = write(tmp_path, "p.html", "<html><title>Page</title><style>x{}</style><p>Visible words.</p>"
                                     "<script>var hidden = 1;</script></html>")
    rows = write(tmp_path, "r.jsonl", json.dumps({"id": "q1", "title": "One", "text": "First row."}) + "\n"
                                      + json.dumps({"text": "Second row."}) + "\n")
    assert store.ingest([html, rows]).documents == 3
    titles = dict(store.db.execute("SELECT key, title FROM documents"))
    assert titles[str(html.resolve())] == "Page" and titles[f"{rows.resolve()}#q1"] == "One"
    assert store.search("hidden", mode="bm25") == [] and store.search("visible", mode="bm25")[0].title == "Page"


def test_an_error_inside_a_files_transaction_leaves_the_store_as_before(store, tmp_path, monkeypatch):
    path = write(tmp_path, "a.txt", "Original words. " * 5)
    store.ingest([path])
    before = store.db.execute("SELECT id, text FROM chunks").fetchall()
    write(tmp_path, "a.txt", "New sentence number one. " * 200)
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return original(*args)

    original = store._insert_chunk
    monkeypatch.setattr(store, "_insert_chunk", failing)
    with pytest.raises(RuntimeError):
        store.ingest([path])
    assert store.db.execute("SELECT id, text FROM chunks").fetchall() == before
    assert store.db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0] == len(before)


KILLER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from conftest import WordEmbedder
from tokenloom.rag.store import Store
store = Store({db!r}, embedder=WordEmbedder())
original, calls = store._insert_chunk, []
def insert(*args):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-file, inside its transaction
    original(*args)
store._insert_chunk = insert
store.ingest(sys.argv[1:])
"""


def test_a_killed_ingest_leaves_the_store_as_before_that_file(tmp_path, embedder):
    db = tmp_path / "k.db"
    first = write(tmp_path, "first.txt", "Kept words. " * 5)
    with Store(db, embedder=embedder) as store:
        store.ingest([first])
    second = write(tmp_path, "second.txt", "Lost words here. " * 200)
    script = KILLER.format(tests=str(Path(__file__).parent), db=str(db))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", script, str(second)], env=env, timeout=120)
    assert result.returncode == -9
    with Store(db, embedder=embedder) as store:
        assert store.counts() == {"documents": 1, "chunks": 1}
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [h.text for h in store.search("words", mode="bm25")] == ["Kept words. " * 4 + "Kept words."]


@pytest.mark.parametrize("query", ['what is "C++"?', "AND OR NOT", "a*b (c) NEAR/3 d:e -f ^g", '"', "", "?!"])
def test_fts_queries_with_punctuation_never_raise(store, query):
    store.ingest([Document("C++ and Rust are languages. Near the end.", "doc")])
    assert isinstance(store.search(query, mode="bm25"), list)
    assert isinstance(store.search(query, mode="hybrid"), list)


def test_fts_query_quotes_every_word():
    assert fts_query('say "hi" now') == '"say" OR "hi" OR "now"'
    assert fts_query("...") == ""


def test_rrf_sums_reciprocal_ranks_with_k_60():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]])
    assert [item for item, _ in fused] == ["a", "c", "b"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[1][1] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2][1] == pytest.approx(1 / 62)


def test_rrf_breaks_ties_by_best_rank_then_id():
    assert [i for i, _ in reciprocal_rank_fusion([[2, 1], [1, 2]])] == [1, 2]  # equal sums, equal best ranks
    assert [i for i, _ in reciprocal_rank_fusion([[5], [4]])] == [4, 5]


def test_dense_search_orders_by_cosine(store):
    store.ingest([Document("apples and pears", "fruit"), Document("trains and buses", "transport"),
                  Document("apples apples apples", "apples")])
    hits = store.search("apples", k=3, mode="dense")
    assert [h.title for h in hits] == ["apples", "fruit", "transport"]
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score == pytest.approx(1.0) and hits[0].score > hits[1].score > hits[2].score


def test_dense_cache_is_rebuilt_after_an_ingest(store):
    store.ingest([Document("apples", "a")])
    assert len(store.search("apples", mode="dense")) == 1
    store.ingest([Document("pears", "p")])
    assert len(store.search("pears", mode="dense")) == 2


def test_dense_cache_sees_another_connections_write(tmp_path, embedder):
    with Store(tmp_path / "s.db", embedder=embedder) as reader, Store(tmp_path / "s.db", embedder=embedder) as writer:
        writer.ingest([Document("apples", "a")])
        assert len(reader.search("apples", mode="dense")) == 1
        writer.ingest([Document("pears", "p")])
        assert len(reader.search("apples", mode="dense")) == 2


def test_hybrid_fuses_bm25_and_dense(store):
    store.ingest([Document("The zebra eats grass.", "z"), Document("Grass is green.", "g")])
    hits = store.search("zebra grass", k=2, mode="hybrid")
    assert hits[0].title == "z" and hits[0].score == pytest.approx(2 / 61)


def test_bad_mode_and_k_say_what_is_allowed(store):
    with pytest.raises(ValueError, match="bm25, dense, hybrid"):
        store.search("x", mode="sparse")
    with pytest.raises(ValueError, match="k must be"):
        store.search("x", k=0)


def test_another_embedder_is_refused(tmp_path, embedder):
    with Store(tmp_path / "e.db", embedder=embedder) as store:
        store.ingest([Document("apples", "a")])
    other = type("Other", (type(embedder),), {"name": "other-model"})()
    with Store(tmp_path / "e.db", embedder=other) as store, pytest.raises(StoreError, match="test-bag-of-words"):
        store.ingest([Document("pears", "p")])


def test_remove_deletes_documents_chunks_and_their_index_rows(store):
    store.ingest([Document("apples here", "a"), Document("pears there", "p")])
    assert store.remove(["a", "missing"]) == 1
    assert store.counts() == {"documents": 1, "chunks": 1}
    assert store.search("apples", mode="bm25") == [] and len(store.search("apples", mode="dense")) == 1
