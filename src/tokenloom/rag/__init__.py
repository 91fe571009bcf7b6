"""Retrieval-augmented generation: a SQLite store of chunks (BM25 + embeddings) and answers with citations.

    import tokenloom as tl
    store = tl.rag.Store("docs.db")
    store.ingest(["notes/", "faq.jsonl"])
    store.search("when was it founded?", k=5, mode="hybrid")
    answer = tl.rag.ask(tl.load(), store, "When was it founded?", samples=4, verify=True)
    answer.answer, answer.citations, answer.abstained, answer.support
"""

from importlib import import_module

_LAZY = {
    "Store": "tokenloom.rag.store", "Hit": "tokenloom.rag.store", "IngestReport": "tokenloom.rag.store",
    "StoreError": "tokenloom.rag.store", "Document": "tokenloom.rag.readers",
    "chunk_text": "tokenloom.rag.chunking", "split_sentences": "tokenloom.rag.chunking",
    "reciprocal_rank_fusion": "tokenloom.rag.fusion",
    "ask": "tokenloom.rag.ask", "Answer": "tokenloom.rag.ask", "AskConfig": "tokenloom.rag.ask",
    "ABSTAIN": "tokenloom.rag.ask", "excerpts": "tokenloom.rag.extract", "best_spans": "tokenloom.rag.extract",
    "Span": "tokenloom.rag.extract",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tokenloom.rag' has no attribute {name!r}")
