"""`tokenloom rag ...`: ingest files into a store, search it, ask questions of it.

    tokenloom rag ingest notes/ faq.jsonl --db docs.db
    tokenloom rag search "when was it founded" --db docs.db --k 5 --mode hybrid --json
    tokenloom rag ask "When was it founded?" --db docs.db --samples 4 --verify --json

Each command builds a Store (and for ask a LanguageModel), calls one library
function and prints. Errors are TokenloomErrors: one line on stderr, exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from tokenloom.errors import InvalidArgument

rag_app = typer.Typer(help="Retrieval-augmented answers from your documents (SQLite store).", no_args_is_help=True)

DB = Annotated[Path, typer.Option("--db", help="The store's SQLite file (created on first ingest).")]
K = Annotated[int, typer.Option("--k", help="How many chunks to retrieve.")]
MODE = Annotated[str, typer.Option("--mode", help="bm25 | dense | hybrid (reciprocal rank fusion)")]
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _open(db: Path, must_exist: bool = True):
    from tokenloom.rag.store import Store

    if must_exist and not db.exists():
        raise InvalidArgument(f"{db}: no such store; create it with `tokenloom rag ingest PATH... --db {db}`")
    return Store(db)


@rag_app.command("ingest")
def ingest_command(
    paths: Annotated[list[Path], typer.Argument(help="Files (.txt .md .html .jsonl) or folders.")],
    db: DB,
    chunk_size: Annotated[int, typer.Option(help="Words per chunk (whole sentences).")] = 150,
    chunk_overlap: Annotated[int, typer.Option(help="Words shared by consecutive chunks.")] = 30,
    as_json: JSON = False,
) -> None:
    """Add files to the store; a file ingested again replaces its chunks."""
    from rich.progress import Progress

    from tokenloom.rag.store import Store, expand_paths

    items = expand_paths(paths)
    with Store(db, chunk_size=chunk_size, chunk_overlap=chunk_overlap) as store:
        with Progress(transient=True, disable=as_json or len(items) < 2) as progress:
            task = progress.add_task("ingest", total=len(items))
            report = store.ingest(items, on_item=lambda _: progress.advance(task))
        counts = store.counts()
    if as_json:
        print(json.dumps({**report.to_dict(), "store": counts}, ensure_ascii=False))
    else:
        print(f"added {len(report.added)}, replaced {len(report.replaced)}, unchanged {len(report.unchanged)}, "
              f"failed {len(report.failed)} files: {report.documents} documents, {report.chunks} chunks written; "
              f"the store holds {counts['documents']} documents, {counts['chunks']} chunks")
    for path, reason in report.failed:
        typer.echo(f"tokenloom: skipped {reason}", err=True)
    if report.failed and not (report.added or report.replaced or report.unchanged):
        raise typer.Exit(2)


@rag_app.command("search")
def search_command(query: str, db: DB, k: K = 5, mode: MODE = "hybrid", as_json: JSON = False) -> None:
    """The chunks that best match a query."""
    with _open(db) as store:
        hits = store.search(query, k=k, mode=mode)
    if as_json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False))
        return
    for h in hits:
        print(f"{h.rank}. [{h.score:.4f}] {h.title} (chunk {h.chunk_id})\n   {h.text[:300]}")


@rag_app.command("ask")
def ask_command(
    question: str,
    db: DB,
    k: K = 2,
    mode: MODE = "hybrid",
    style: Annotated[str, typer.Option(help="Prompt: short (worked examples, a span and its citation) or chat.")]
    = "short",
    sentences: Annotated[Optional[int], typer.Option(
        help="Show the model only this many sentences of the chunks, those closest to the question "
             "(0: whole chunks; default 1 for short, 0 for chat).")] = None,
    extractive: Annotated[Optional[bool], typer.Option(
        "--extractive/--free", help="Answer with the passage span the model scores highest (short style's "
                                    "default), or let it write the answer.")] = None,
    samples: Annotated[int, typer.Option(help="Candidates to sample; the best supported one is kept.")] = 1,
    verify: Annotated[bool, typer.Option("--verify", help="Check each sentence of the answer against the store.")] = False,
    hedge: Annotated[bool, typer.Option("--hedge", help="Ask the model to hedge or say it does not know.")] = False,
    model: Annotated[str, typer.Option("--model", "-m", help="Name, .gguf file, HF folder or checkpoint.")]
    = "smollm2-135m-instruct",
    as_json: JSON = False,
) -> None:
    """Answer a question from the store's passages, with citations, or abstain."""
    import tokenloom as tl
    from tokenloom.rag.ask import AskConfig, ask

    config = AskConfig(k=k, mode=mode, samples=samples, verify=verify, hedge=hedge, style=style, sentences=sentences,
                       extractive=extractive)
    with _open(db) as store:
        answer = ask(tl.load(model), store, question, config=config)
    if as_json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
        return
    print(answer.answer)
    for c in answer.citations:
        print(f"  [{c['passage']}] {c['title']}: {c['text'][:200]}")
    extra = f"; consistency {answer.consistency:.2f}" if answer.consistency is not None else ""
    print(f"  (support {answer.support:.2f}, retrieval {answer.retrieval_score:.2f}{extra}"
          f"{'; abstained: ' + answer.reason if answer.abstained else ''})")
    for check in answer.checks or []:
        print(f"  {'ok ' if check['supported'] else 'NO '} {check['support']:.2f} {check['sentence']}")
