"""`Store`: documents, chunks, BM25 and embeddings in one SQLite file.

    store = Store("docs.db")
    report = store.ingest(["notes/", "faq.jsonl"])   # IngestReport: files added/replaced/unchanged/failed
    store.search("who wrote it?", k=5, mode="hybrid") # [Hit(chunk_id, document_id, title, text, score, rank)]

Layout (schema version in `PRAGMA user_version`; WAL journal):
  documents(id, key UNIQUE, source, title, content_hash)
  chunks(id, document_id -> documents ON DELETE CASCADE, ordinal, text, start_char, end_char, embedding)
  chunks_fts: an FTS5 table over chunks.text (porter stemming), rowid = chunk id
  meta(key, value): the embedder's name and dimension, the chunking settings

Embeddings are float32 BLOBs (little-endian, `dimension` floats) rather than a
vector index: this Python's sqlite3 cannot load extensions (no
`enable_load_extension`), so sqlite-vec is out, and brute force is quick at this
scale (benchmarks/rag_dense_search.py measures it). Dense search loads every BLOB
into one (N, d) tensor once, and reloads it after an ingest, or when another
connection has written (`PRAGMA data_version`).

Each file is ingested in one transaction: a crash or a kill mid-file leaves the
store as it was before that file. Files are read, chunked and embedded before the
transaction opens, so the write lock is held only for the inserts.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tokenloom.errors import InvalidArgument, TokenloomError
from tokenloom.rag.chunking import chunk_text
from tokenloom.rag.fusion import reciprocal_rank_fusion
from tokenloom.rag.readers import SUFFIXES, Document, UnreadableFile, read_documents

SCHEMA_VERSION = 1
MODES = ("bm25", "dense", "hybrid")
FUSION_DEPTH = 50  # hybrid fuses the top max(k, 50) of each list

_SCHEMA = (
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE documents(
        id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
        title TEXT NOT NULL, content_hash TEXT NOT NULL)""",
    "CREATE INDEX documents_source ON documents(source)",
    """CREATE TABLE chunks(
        id INTEGER PRIMARY KEY,
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        ordinal INTEGER NOT NULL, text TEXT NOT NULL,
        start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, embedding BLOB NOT NULL,
        UNIQUE(document_id, ordinal))""",
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, tokenize='porter unicode61')",
    """CREATE TRIGGER chunks_deleted AFTER DELETE ON chunks BEGIN
        DELETE FROM chunks_fts WHERE rowid = old.id;
    END""",
)
# MIGRATIONS[v]: the statements that take a store from version v to v + 1.
MIGRATIONS: dict[int, tuple[str, ...]] = {0: _SCHEMA}


class StoreError(TokenloomError):
    """A store file that this tokenloom cannot use (newer schema, other embedder, not SQLite)."""


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: int
    title: str
    text: str
    score: float  # bm25: -bm25() (higher is better); dense: cosine; hybrid: the RRF sum
    rank: int  # 1 = best
    source: str = ""
    ordinal: int = 0
    start_char: int = 0
    end_char: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    documents: int = 0
    chunks: int = 0

    def to_dict(self) -> dict:
        return {**self.__dict__, "failed": [{"path": p, "reason": r} for p, r in self.failed]}


def fts_query(text: str) -> str:
    """The user's text as an FTS5 query that cannot raise: every word quoted, joined by OR.

    >>> fts_query('C++ "rocks"; AND (NEAR) -x*')
    '"C" OR "rocks" OR "AND" OR "NEAR" OR "x"'
    """
    terms = re.findall(r"\w+", text)
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def expand_paths(items: Iterable) -> list:
    """Files and Documents in order; a folder becomes its supported files, sorted."""
    out = []
    for item in items:
        if isinstance(item, Document):
            out.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES))
        else:
            out.append(path)
    return out


class Store:
    """One SQLite file of documents, chunks, an FTS5 index and embeddings.

    chunk_size, chunk_overlap: in words (see `tokenloom.rag.chunking`).
    embedder: anything with `encode(texts) -> (N, d)` unit rows (default: the shared MiniLM, loaded on first use).
    """

    def __init__(self, path: str | Path, chunk_size: int = 150, chunk_overlap: int = 30, embedder=None):
        chunk_text("x", chunk_size, chunk_overlap)  # validates both
        self.path = Path(path)
        self.chunk_size, self.chunk_overlap = chunk_size, chunk_overlap
        self._embedder = embedder
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: not a usable SQLite file ({error})") from None
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self._matrix: torch.Tensor | None = None  # (N, d) embeddings, rows in chunk-id order
        self._matrix_ids: list[int] = []
        self._seen_version: int | None = None

    # -- schema -----------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}; this tokenloom reads versions up to "
                             f"{SCHEMA_VERSION}: open it with a newer tokenloom")
        while version < SCHEMA_VERSION:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[version]:
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {version + 1}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            version += 1

    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta"))

    @property
    def embedder(self):
        if self._embedder is None:
            from tokenloom.embed import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    def _embedder_name(self) -> str:
        name = getattr(self.embedder, "name", None) or Path(getattr(self.embedder, "path", "embedder")).name
        return str(name)

    def _check_embedder(self, dimension: int) -> None:
        """The first ingest records the embedder; a later one with another embedder is refused."""
        meta, name = self.meta(), self._embedder_name()
        if "embedder" not in meta:
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                ("embedder", name), ("dimension", str(dimension)),
                ("chunk_unit", "words"), ("chunk_size", str(self.chunk_size)),
                ("chunk_overlap", str(self.chunk_overlap))])
        elif meta["embedder"] != name or int(meta["dimension"]) != dimension:
            raise StoreError(f"{self.path} holds {meta['embedder']} embeddings ({meta['dimension']} dimensions); "
                             f"this embedder is {name} ({dimension}): use a new store file")

    # -- ingest -----------------------------------------------------------------
    def ingest(self, items, on_item: Callable[[str], None] | None = None) -> IngestReport:
        """Store files (txt, md, html, jsonl; folders are searched) and Documents.

        A file's documents replace every document ingested from that file before; a
        Document replaces the one with its key. A file that cannot be read is listed in
        `report.failed` and the others go on. on_item(name) is called after each item.
        """
        report = IngestReport()
        for item in expand_paths([items] if isinstance(items, (str, Path, Document)) else items):
            name = item.key if isinstance(item, Document) else str(item)
            try:
                docs = [item] if isinstance(item, Document) else read_documents(item)
            except UnreadableFile as error:
                report.failed.append((name, str(error)))
            else:
                self._ingest_unit(docs, None if isinstance(item, Document) else str(Path(item).resolve()), report,
                                  name)
            if on_item is not None:
                on_item(name)
        return report

    def _ingest_unit(self, docs: list[Document], source: str | None, report: IngestReport, name: str) -> None:
        old = self._existing(docs, source)
        if old == {d.key: d.content_hash for d in docs}:
            report.unchanged.append(name)
            return
        spans = [chunk_text(d.text, self.chunk_size, self.chunk_overlap) for d in docs]
        texts = [s.text for doc_spans in spans for s in doc_spans]
        vectors = self.embedder.encode(texts) if texts else torch.zeros(0, 0)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if texts:
                self._check_embedder(vectors.shape[1])
            self._delete(docs, source)
            row = 0
            for doc, doc_spans in zip(docs, spans):
                doc_id = self.db.execute(
                    "INSERT INTO documents(key, source, title, content_hash) VALUES (?, ?, ?, ?)",
                    (doc.key, doc.source or source or "", doc.title or doc.key, doc.content_hash)).lastrowid
                for ordinal, span in enumerate(doc_spans):
                    self._insert_chunk(doc_id, ordinal, span, vectors[row])
                    row += 1
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._matrix = None
        (report.replaced if old else report.added).append(name)
        report.documents += len(docs)
        report.chunks += len(texts)

    def _existing(self, docs: list[Document], source: str | None) -> dict[str, str]:
        if source is not None:
            rows = self.db.execute("SELECT key, content_hash FROM documents WHERE source = ?", (source,))
        else:
            rows = self.db.execute("SELECT key, content_hash FROM documents WHERE key = ?", (docs[0].key,))
        return dict(rows)

    def _delete(self, docs: list[Document], source: str | None) -> None:
        if source is not None:
            self.db.execute("DELETE FROM documents WHERE source = ?", (source,))
        self.db.executemany("DELETE FROM documents WHERE key = ?", [(d.key,) for d in docs])

    def _insert_chunk(self, doc_id: int, ordinal: int, span, vector: torch.Tensor) -> None:
        blob = vector.numpy().astype("<f4").tobytes()
        chunk_id = self.db.execute(
            "INSERT INTO chunks(document_id, ordinal, text, start_char, end_char, embedding) "
            "VALUES (?, ?, ?, ?, ?, ?)", (doc_id, ordinal, span.text, span.start, span.end, blob)).lastrowid
        self.db.execute("INSERT INTO chunks_fts(rowid, text) VALUES (?, ?)", (chunk_id, span.text))

    def remove(self, keys: Iterable[str]) -> int:
        """Delete documents (and their chunks) by key, in one transaction; how many were there."""
        keys = list(keys)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            removed = sum(self.db.execute("DELETE FROM documents WHERE key = ?", (k,)).rowcount for k in keys)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._matrix = None
        return removed

    def counts(self) -> dict[str, int]:
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {"documents": one("SELECT count(*) FROM documents"), "chunks": one("SELECT count(*) FROM chunks")}

    # -- search -----------------------------------------------------------------
    def search(self, query: str, k: int = 5, mode: str = "hybrid") -> list[Hit]:
        """The k best chunks for `query`: bm25 (FTS5), dense (cosine over all embeddings) or hybrid (RRF of both)."""
        if mode not in MODES:
            raise InvalidArgument(f"search mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not isinstance(k, int) or k < 1:
            raise InvalidArgument(f"k must be a whole number >= 1, got {k!r}")
        if mode == "bm25":
            ranked = self.bm25(query, k)
        elif mode == "dense":
            ranked = self.dense(query, k)
        else:
            depth = max(k, FUSION_DEPTH)
            lists = [[i for i, _ in self.bm25(query, depth)], [i for i, _ in self.dense(query, depth)]]
            ranked = reciprocal_rank_fusion(lists)[:k]
        return self.hits(ranked)

    def bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, -bm25) best first; ties by chunk id. A query with no words finds nothing."""
        match = fts_query(query)
        if not match:
            return []
        rows = self.db.execute("SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? "
                               "ORDER BY s, rowid LIMIT ?", (match, k))
        return [(chunk_id, -score) for chunk_id, score in rows]

    def embeddings(self) -> tuple[list[int], torch.Tensor]:
        """Every chunk's id and embedding, (N, d) float32, cached until the store changes."""
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if self._matrix is None or version != self._seen_version:
            rows = self.db.execute("SELECT id, embedding FROM chunks ORDER BY id").fetchall()
            self._matrix_ids = [r[0] for r in rows]
            flat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
            dimension = int(self.meta().get("dimension", 0)) or 1
            self._matrix = torch.from_numpy(flat.copy()).view(len(rows), dimension if rows else 0)
            self._seen_version = version
        return self._matrix_ids, self._matrix

    def dense(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine) best first; ties by chunk id (a stable sort over rows in id order)."""
        ids, matrix = self.embeddings()
        if not ids:
            return []
        scores = matrix @ self.embedder.encode([query])[0]  # (N,)
        kth = torch.topk(scores, min(k, len(ids))).values[-1]
        candidates = torch.nonzero(scores >= kth).squeeze(1)  # every row tied with the k-th too, in id order
        order = candidates[torch.sort(scores[candidates], descending=True, stable=True).indices[:k]]
        return [(ids[i], float(scores[i])) for i in order.tolist()]

    def cosines(self, text: str, chunk_ids: list[int]) -> list[float]:
        """Cosine similarity of `text` with each chunk's stored embedding."""
        ids, matrix = self.embeddings()
        position = {c: i for i, c in enumerate(ids)}
        vector = self.embedder.encode([text])[0]
        return [float(matrix[position[c]] @ vector) for c in chunk_ids]

    def hits(self, ranked: list[tuple[int, float]]) -> list[Hit]:
        if not ranked:
            return []
        marks = ",".join("?" * len(ranked))
        rows = self.db.execute(
            f"SELECT c.id, c.document_id, d.title, c.text, d.source, c.ordinal, c.start_char, c.end_char "
            f"FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN ({marks})",
            [i for i, _ in ranked])
        by_id = {r[0]: r for r in rows}
        return [Hit(r[0], r[1], r[2], r[3], score, rank, r[4], r[5], r[6], r[7])
                for rank, (chunk_id, score) in enumerate(ranked, 1) if (r := by_id.get(chunk_id))]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
