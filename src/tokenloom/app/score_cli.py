"""`tokenloom score ...`: reference metrics from the command line.

Each command reads its files (one segment per line, `-` for standard input),
calls one function of `tokenloom.metrics` and prints the result, as text or,
with `--json`, as the keys scripts rely on. Bad input raises InvalidArgument
with the file and line in the message; `tokenloom.app.cli.main` turns that into
one line on stderr and exit code 2.
"""

import json
import sys
from pathlib import Path

import typer

from tokenloom.errors import InvalidArgument

score_app = typer.Typer(help="Score hypotheses against references (BLEU, chrF, ROUGE, diversity).", no_args_is_help=True)

HYP = typer.Option(..., "--hyp", help="Hypotheses, one segment per line ('-': standard input).")
REF = typer.Option(..., "--ref", help="References, one per line; repeat --ref for several reference sets.")
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
SENTENCE = typer.Option(False, "--sentence", help="One score per line instead of the corpus score.")


def read_lines(name: str) -> list[str]:
    """The lines of a UTF-8 file (or standard input for '-'), without line ends."""
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as error:
        raise InvalidArgument(f"{name}: cannot read: {error.strerror}") from None
    label = "<stdin>" if name == "-" else name
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InvalidArgument(f"{label}: line {line}: not valid UTF-8 (byte {data[error.start]:#04x})") from None
    if not text:
        raise InvalidArgument(f"{label}: line 1: the file is empty")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_parallel(hyp: str, refs: list[str]) -> tuple[list[str], list[list[str]]]:
    """Hypotheses and reference streams, checked to have the same number of lines."""
    if [hyp, *refs].count("-") > 1:
        raise InvalidArgument("only one of --hyp/--ref can read standard input ('-')")
    hypotheses = read_lines(hyp)
    streams = []
    for ref in refs:
        lines = read_lines(ref)
        if len(lines) != len(hypotheses):
            shorter = min(len(lines), len(hypotheses)) + 1
            raise InvalidArgument(f"{ref}: line {shorter}: {len(lines)} reference lines "
                                  f"but {len(hypotheses)} hypothesis lines in {hyp}")
        streams.append(lines)
    return hypotheses, streams


def emit(value, as_json: bool) -> None:
    """Print a value: JSON (with --json) or its text form, one item per line for lists."""
    if as_json:
        typer.echo(json.dumps(value, ensure_ascii=False, indent=1))
    else:
        typer.echo("\n".join(map(str, value)) if isinstance(value, list) else str(value))


def _bleu_json(result) -> dict:
    keys = ("score", "precisions", "bp", "ratio", "hyp_len", "ref_len", "counts", "totals", "signature")
    return {key: result.to_dict()[key] for key in keys}


@score_app.command()
def bleu(hyp: str = HYP, ref: list[str] = REF,
         tokenize: str = typer.Option("13a", help="13a | intl | char | none"),
         lowercase: bool = typer.Option(False, "--lowercase", help="Case-insensitive BLEU."),
         smooth: str = typer.Option("exp", help="exp | floor | add-k | none"),
         smooth_value: float = typer.Option(None, help="Value for floor / add-k."),
         sentence: bool = SENTENCE, verbose: bool = typer.Option(False, "--verbose", help="Show the formula's parts."),
         as_json: bool = JSON) -> None:
    """BLEU, identical to sacrebleu (corpus level unless --sentence)."""
    from tokenloom import metrics

    hypotheses, streams = read_parallel(hyp, ref)
    options = dict(tokenize=tokenize, lowercase=lowercase, smooth_method=smooth,
                   smooth_value=smooth_value, verbose=verbose)
    if sentence:
        results = metrics.sentence_bleu_scores(hypotheses, streams, **options)
    else:
        results = metrics.corpus_bleu(hypotheses, streams, **options)
    if as_json:
        emit([_bleu_json(r) for r in results] if sentence else _bleu_json(results), True)
    elif verbose:
        emit([r.explain() for r in results] if sentence else results.explain(), False)
    else:
        emit(results if sentence else f"{results}\n{results.signature}", False)


@score_app.command()
def chrf(hyp: str = HYP, ref: list[str] = REF,
         word_order: int = typer.Option(0, help="2 gives chrF++."),
         lowercase: bool = typer.Option(False, "--lowercase"),
         sentence: bool = SENTENCE, as_json: bool = JSON) -> None:
    """chrF, identical to sacrebleu (corpus level unless --sentence)."""
    from tokenloom import metrics

    hypotheses, streams = read_parallel(hyp, ref)
    options = dict(word_order=word_order, lowercase=lowercase)
    if sentence:
        results = [metrics.sentence_chrf(h, list(refs), **options) for h, refs in zip(hypotheses, zip(*streams))]
        emit([r.to_dict() for r in results] if as_json else results, as_json)
    else:
        result = metrics.corpus_chrf(hypotheses, streams, **options)
        emit(result.to_dict() if as_json else f"{result}\n{result.signature}", as_json)


@score_app.command()
def rouge(hyp: str = HYP, ref: list[str] = REF,
          types: str = typer.Option("rouge1,rouge2,rougeL,rougeLsum", help="Comma-separated ROUGE types."),
          stem: bool = typer.Option(False, "--stem", help="Porter stemming (as rouge-score)."),
          unicode: bool = typer.Option(False, "--unicode", help="Keep non-ASCII words (NOT rouge-score compatible)."),
          sentence_sep: str = typer.Option(None, help="Split lines into sentences at this string (for rougeLsum)."),
          bootstrap: int = typer.Option(0, help="Bootstrap samples for confidence intervals."),
          sentence: bool = SENTENCE, as_json: bool = JSON) -> None:
    """ROUGE-N/L/Lsum, identical to rouge-score; several --ref: best match per line."""
    from tokenloom import metrics

    hypotheses, streams = read_parallel(hyp, ref)
    if sentence_sep:
        hypotheses = [h.replace(sentence_sep, "\n") for h in hypotheses]
        streams = [[r.replace(sentence_sep, "\n") for r in stream] for stream in streams]
    references = [list(refs) for refs in zip(*streams)]
    result = metrics.rouge(hypotheses, references, types=types, stem=stem, unicode=unicode, bootstrap=bootstrap)
    if as_json:
        emit(result.segment_dicts() if sentence else _rouge_json(result), True)
    elif sentence:
        emit([" ".join(f"{k} {s[k].fmeasure:.4f}" for k in result.types) for s in result.segments], False)
    else:
        emit(f"{result}\n{result.signature}", False)


def _rouge_json(result) -> dict:
    out = result.to_dict()
    for kind, intervals in (result.intervals or {}).items():
        names = ("precision", "recall", "fmeasure")
        out[kind]["interval"] = {bound: {name: getattr(i, bound) for name, i in zip(names, intervals)}
                                 for bound in ("low", "mid", "high")}
    out["signature"] = result.signature
    return out


@score_app.command()
def diversity(file: str = typer.Argument(..., help="Samples, one per line ('-': standard input)."),
              as_json: bool = JSON) -> None:
    """Distinct-n, repetition rate, loops, Zipf coefficient and self-BLEU of samples."""
    from tokenloom import metrics

    report = metrics.diversity_report(read_lines(file))
    emit(report if as_json else "\n".join(f"{key}: {value:.4f}" for key, value in report.items()), as_json)
