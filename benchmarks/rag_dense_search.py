"""Brute-force dense search over float32 BLOBs: load time and per-query time at 240 and 100k chunks.

    python benchmarks/rag_dense_search.py [--sizes 240 100000]

Why BLOBs and not sqlite-vec: this Python's sqlite3 has no `enable_load_extension`, so
no extension loads; and a brute-force (N, 384) @ (384,) product is what sqlite-vec's
vec0 tables do as well (exact KNN scan). Chunks here are synthetic unit vectors inserted
straight into a Store's tables; the query's MiniLM encode is not timed (it is the same
for any index).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_report import cpu_line  # noqa: E402

from tokenloom.rag.store import Store  # noqa: E402


class FixedQuery:
    name, dimension = "synthetic", 384

    def __init__(self):
        self.vector = torch.nn.functional.normalize(torch.randn(1, 384), dim=-1)

    def encode(self, texts):
        return self.vector


def fill(store: Store, n: int) -> None:
    vectors = torch.nn.functional.normalize(torch.randn(n, 384, generator=torch.Generator().manual_seed(0)), dim=-1)
    db = store.db
    db.execute("BEGIN")
    db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [("embedder", "synthetic"), ("dimension", "384")])
    doc = db.execute("INSERT INTO documents(key, source, title, content_hash) VALUES ('d', '', 'd', '')").lastrowid
    db.executemany("INSERT INTO chunks(document_id, ordinal, text, start_char, end_char, embedding) "
                   "VALUES (?, ?, '', 0, 0, ?)", ((doc, i, vectors[i].numpy().tobytes()) for i in range(n)))
    db.execute("COMMIT")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[240, 100_000])
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    print(cpu_line(), f"torch threads {torch.get_num_threads()}")
    print("| chunks | file MB | load BLOBs -> tensor (ms) | search, k=5 (ms/query, median) |\n|---:|---:|---:|---:|")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            store = Store(Path(folder) / "s.db", embedder=FixedQuery())
            fill(store, n)
            t = time.perf_counter()
            store.embeddings()
            load = time.perf_counter() - t
            times = []
            for _ in range(args.queries):
                t = time.perf_counter()
                store.dense("q", 5)
                times.append(time.perf_counter() - t)
            size = (Path(folder) / "s.db").stat().st_size + (Path(folder) / "s.db-wal").stat().st_size
            print(f"| {n:,} | {size / 1e6:.1f} | {1000 * load:.1f} | {1000 * sorted(times)[len(times) // 2]:.2f} |")
            store.close()


if __name__ == "__main__":
    main()
