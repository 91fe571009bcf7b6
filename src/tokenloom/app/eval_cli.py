"""`tokenloom eval perplexity ...` and `tokenloom classify ...`.

Each command parses its options, calls one library function of `tokenloom.eval`
and prints. Under `torchrun --nproc-per-node N -m tokenloom eval perplexity FILE`
the windows are split across the N processes and rank 0 prints the result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from tokenloom.errors import InvalidArgument

eval_app = typer.Typer(help="Score text with the model (perplexity, surprisal maps).", no_args_is_help=True)

DEFAULT_MODEL = "smollm2-135m-instruct"
PERPLEXITY_JSON_KEYS = ("perplexity", "nll", "tokens", "bits_per_byte", "context", "stride")


def _progress_bar(enabled: bool):
    """A rich progress bar over windows on stderr; a no-op callback when disabled."""
    if not enabled:
        return None, (lambda done, total: None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress("windows", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task("windows", total=None)
    return bar, lambda done, total: bar.update(task, completed=done, total=total)


@eval_app.command("perplexity")
def perplexity_command(
    file: Optional[Path] = typer.Argument(None, help="UTF-8 text file to score (leave out with --task)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Registered name, GGUF path or model folder."),
    context: Optional[int] = typer.Option(None, "--context", help="Input tokens per window (default min(model, 2048))."),
    stride: Optional[int] = typer.Option(None, "--stride", help="New tokens scored per window (default context/4; = context: disjoint)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Windows per forward pass (default: about 2,048 tokens' worth)."),
    bos: bool = typer.Option(False, "--bos/--no-bos", help="Put <|endoftext|> in front so the first token is scored "
                                                           "too (--task wikitext puts the tokenizer's BOS there)."),
    precision: str = typer.Option(
        "float32", "--precision",
        help="float32 (the default: scores comparable with published ones) | bfloat16 | native | auto."),
    device: Optional[str] = typer.Option(
        None, "--device", help="cpu | cuda | cuda:N (default: the CPU; under torchrun with CUDA, each rank's GPU)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a surprisal map page here."),
    png: Optional[Path] = typer.Option(None, "--png", help="Plot surprisal along the text here."),
    top: int = typer.Option(5, "--top", help="Alternatives shown per token in the --html page."),
    task: Optional[str] = typer.Option(
        None, "--task", help="wikitext: lm-evaluation-harness's wikitext task (its detokenizer, counts and prefix)."),
    data: Optional[Path] = typer.Option(
        None, "--data", help="--task wikitext: a raw WikiText file (default: the local WikiText-2 file of --split)."),
    split: str = typer.Option("test", "--split", help="--task wikitext: train | validation | test."),
    limit: Optional[int] = typer.Option(None, "--limit", help="--task wikitext: only the first N pages."),
) -> None:
    """Perplexity of FILE, or of a task's data: exp of the mean negative log-likelihood per token."""
    import tokenloom as tl
    from tokenloom import distributed
    from tokenloom.eval.perplexity import perplexity
    from tokenloom.eval.surprisal import plot_png, render_html, surprisal_map

    task_options = _task_options(file, task, data, split, limit, bool(html or png))
    if file is not None and not file.is_file():
        raise InvalidArgument(f"{file} is not a file")
    ctx = distributed.setup()
    try:
        if ctx.enabled and (html or png):
            raise InvalidArgument("--html and --png need one process; run them without torchrun")
        lm = tl.load(model, precision=precision, device=device or (ctx.device if ctx.enabled else None))
        bar, progress = _progress_bar(ctx.is_main and sys.stderr.isatty())
        options = dict(context=context, stride=stride, batch_size=batch_size, bos=bos)
        with bar or _Nothing():
            if html or png:
                tokens, result = surprisal_map(lm, file.read_text(encoding="utf-8"), top=top, **options)
            else:
                result = perplexity(lm, file, progress=progress, **options, **task_options)
        if html:
            html.write_text(render_html(tokens, result, title=f"Surprisal of {file.name}"), encoding="utf-8")
        if png:
            plot_png(tokens, png, title=f"Surprisal along {file.name}")
        if ctx.is_main:
            _print_perplexity(result, as_json)
    finally:
        distributed.teardown(ctx)


def _task_options(file: Path | None, task: str | None, data: Path | None, split: str, limit: int | None,
                  maps: bool) -> dict:
    """perplexity()'s task arguments from the flags, or {} without --task."""
    if task is None:
        if file is None:
            raise InvalidArgument("give a text FILE to score, or --task wikitext")
        given = [flag for flag, value in (("--data", data), ("--limit", limit)) if value is not None]
        if given or split != "test":
            raise InvalidArgument(f"{', '.join(given) or '--split'} goes with --task wikitext")
        return {}
    if file is not None:
        raise InvalidArgument(f"--task {task} reads its pages from --data FILE; drop the positional {file}")
    if maps:
        raise InvalidArgument("--html and --png draw one text FILE; leave them out with --task")
    return dict(task=task, data=data, split=split, limit=limit)


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _print_perplexity(result, as_json: bool) -> None:
    if as_json:
        data = {key: getattr(result, key) for key in PERPLEXITY_JSON_KEYS}
        data.update(byte_perplexity=result.byte_perplexity, word_perplexity=result.word_perplexity,
                    signature=result.signature)
        print(json.dumps(data))
        return
    print(f"perplexity      {result.perplexity:.4f}")
    print(f"nll (nats/tok)  {result.nll:.6f}")
    print(f"tokens scored   {result.tokens}")
    print(f"bits per byte   {result.bits_per_byte:.6f}")
    print(f"byte / word ppl {result.byte_perplexity:.4f} / {result.word_perplexity:.4f}")
    print(f"windows         context {result.context}, stride {result.stride}")
    print(result.signature)


def classify_command(
    data: Path = typer.Option(..., "--data", help="TSV file with a header row."),
    text_column: str = typer.Option("sentence", "--text-column"),
    label_column: str = typer.Option("label", "--label-column"),
    labels: str = typer.Option(..., "--labels", help="Comma-separated label names; a gold value may be an index."),
    template: str = typer.Option("Review: {text}\nSentiment:", "--template", help="Prompt; {text} is replaced."),
    method: str = typer.Option("likelihood", "--method", help="likelihood | mean | calibrated | generate"),
    model: str = typer.Option(DEFAULT_MODEL, "--model"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N rows."),
    batch_size: int = typer.Option(8, "--batch-size"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Zero-shot classification by a generative model: accuracy, macro-F1, confusion matrix."""
    import tokenloom as tl
    from tokenloom.eval.classify import classify
    from tokenloom.eval.report import read_labelled_tsv, report

    names = [name.strip() for name in labels.split(",") if name.strip()]
    texts, gold = read_labelled_tsv(data, text_column, label_column, names)
    if limit is not None:
        if limit < 1:
            raise InvalidArgument(f"--limit must be at least 1, got {limit}")
        texts, gold = texts[:limit], gold[:limit]
    template = template.replace("\\n", "\n")
    lm = tl.load(model)
    predicted = [c.label for c in classify(lm, texts, names, template, method, batch_size=batch_size)]
    result = report(gold, predicted, names, method)
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    print(f"method            {method}  (n = {result.n})")
    print(f"accuracy          {result.accuracy:.4f}")
    print(f"macro-F1          {result.macro_f1:.4f}")
    print(f"majority baseline {result.majority_baseline:.4f}")
    if method == "generate":
        print(f"no label given    {result.no_label} ({result.no_label / result.n:.1%})")
    columns = list(next(iter(result.confusion.values())))
    print("confusion (rows: gold, columns: predicted)")
    print(" " * 12 + "".join(f"{c:>12}" for c in columns))
    for gold_name, row in result.confusion.items():
        print(f"{gold_name:>12}" + "".join(f"{row[c]:>12}" for c in columns))
