"""Repetition, the first failure mode, measured: decoding strategies and their mitigations
against the articles' own human continuations.

    python benchmarks/repetition.py [--prompts 100] [--max-tokens 256] [--settings greedy,top_p,...]
                                    [--out docs/repetition.png] [--json results.json]

Prompts: the first sentence of each of the first `--prompts` articles of WikiText-2 test
(../shared/data/wikitext2/wiki.test.raw, its tokenisation artefacts " @-@ ", " , " undone).
Each setting continues every prompt for exactly `--max-tokens` tokens (EOS ignored, as
fixed-length samples are compared in Holtzman et al. 2020); "human" is the article's own
text after that sentence, cut to the same number of the model's tokens.

Settings: the decoding strategies of Holtzman et al. (greedy, full random sampling, top-k 40,
top-p 0.95, temperature 0.7), and the mitigations applied to greedy decoding, the strategy
that loops: repetition penalty 1.3 (CTRL), no-repeat 3-grams, DRY (llama.cpp's sampler:
multiplier 0.8, base 1.75, allowed length 2, the whole context) and the semantic history
guard (a sentence whose MiniLM embedding reaches cosine 0.85 with an earlier one of the
output is rolled back and resampled, at most 3 times).

Figures per setting, on the model's token ids (the human text tokenised the same way):
- rep-4: the share of an output's 4-grams that repeat an earlier 4-gram of it (mean over outputs);
- distinct-1/2/3 over all outputs of the setting (Li et al. 2016);
- loops: the share of outputs whose end repeats with a period of at most 64 tokens for at
  least 64 tokens and two full cycles;
- sentence similarity: the mean cosine similarity between an output's sentences (MiniLM),
  over outputs with two sentences or more: repeated ideas, not only repeated words;
- log p: the mean log-probability per token of the output under the model itself, with no
  sampling step (the price in fluency: greedy text is the model's likeliest, human text is not).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_report import cpu_line  # noqa: E402

import tokenloom as tl  # noqa: E402
from tokenloom.generation.engine import Request  # noqa: E402
from tokenloom.generation.params import SamplingParams  # noqa: E402
from tokenloom.generation.scheduler import RuntimeLimits  # noqa: E402
from tokenloom.metrics.diversity import detect_loop, distinct_n, repetition_rate  # noqa: E402

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext2" / "wiki.test.raw"

SETTINGS: dict[str, dict] = {
    "greedy": dict(temperature=0.0),
    "full random": dict(),
    "top-k 40": dict(top_k=40),
    "top-p 0.95": dict(top_p=0.95),
    "T 0.7": dict(temperature=0.7),
    "greedy + repetition penalty 1.3": dict(temperature=0.0, repetition_penalty=1.3),
    "greedy + no-repeat 3-grams": dict(temperature=0.0, no_repeat_ngram_size=3),
    "greedy + DRY 0.8": dict(temperature=0.0, dry_multiplier=0.8, dry_base=1.75, dry_allowed_length=2),
    "greedy + semantic guard 0.85": dict(temperature=0.0, semantic_repetition_threshold=0.85,
                                         semantic_max_retries=3),
}
LOOP_SPAN, LOOP_PERIOD = 64, 64
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


# -- the text ---------------------------------------------------------------------------
def untokenize(text: str) -> str:
    """WikiText's raw files space out punctuation: 'a @-@ b , c' -> 'a-b, c'."""
    text = re.sub(r" @(.)@ ", r"\1", text)
    text = re.sub(r" ([.,;:!?)\]'])", r"\1", text)
    text = re.sub(r"([(\[]) ", r"\1", text)
    return re.sub(r" (n't|'s|'re|'ve|'d|'ll|'m)\b", r"\1", text)


def articles(path: Path) -> list[str]:
    """The body of each article (its lines up to the next ' = Title = ' heading), untokenised."""
    found, body = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if re.fullmatch(r"= [^=].* =", stripped):
            if body:
                found.append(untokenize(" ".join(body)))
            body = []
        elif body is not None and stripped and not stripped.startswith("="):
            body.append(stripped)
    if body:
        found.append(untokenize(" ".join(body)))
    return found


def first_sentence(article: str) -> tuple[str, str]:
    """(the first sentence, the rest of the article)."""
    match = re.search(r"(?<=[.!?])\s", article)
    if match is None:
        return article, ""
    return article[: match.start()], article[match.end() - 1:]


# -- the figures ------------------------------------------------------------------------
def stuck_in_loop(ids: list[int]) -> bool:
    period, repeats = detect_loop(ids, min_repeats=2, max_period=LOOP_PERIOD)
    return period > 0 and period * repeats >= LOOP_SPAN


def sentence_similarity(texts: list[str], embedder) -> float | None:
    """Mean over texts (with >= 2 sentences) of the mean cosine similarity of their sentence pairs."""
    means = []
    for text in texts:
        sentences = [s.strip() for s in SENTENCE_END.split(text) if len(s.strip()) > 3]
        if len(sentences) < 2:
            continue
        v = embedder.encode(sentences)  # (S, 384)
        sims = v @ v.T  # (S, S)
        n = len(sentences)
        means.append(float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1))))
    return sum(means) / len(means) if means else None


def figures(outputs: list[list[int]], texts: list[str], logps: list[torch.Tensor], embedder) -> dict:
    return {
        "rep_4": sum(repetition_rate(ids, 4) for ids in outputs) / len(outputs),
        "distinct_1": distinct_n(outputs, 1), "distinct_2": distinct_n(outputs, 2),
        "distinct_3": distinct_n(outputs, 3),
        "loops": sum(stuck_in_loop(ids) for ids in outputs) / len(outputs),
        "sentence_similarity": sentence_similarity(texts, embedder),
        "logp": float(torch.cat(logps).mean()) if logps else None,
    }


# -- running ----------------------------------------------------------------------------
def generate(lm, prompts: list[list[int]], params: SamplingParams, progress, task) -> list:
    handles = lm.scheduler.submit_many([Request(list(p), params) for p in prompts], block=True)
    done = []
    for handle in handles:
        done.append(handle.result())
        progress.advance(task)
    return done


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    panels = [("rep_4", "repeated 4-grams (share)"), ("loops", "outputs stuck in a loop (share)"),
              ("distinct_2", "distinct-2"), ("sentence_similarity", "sentence similarity (MiniLM)"),
              ("logp", "mean log p per token")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 0.45 * len(names) + 1.5), sharey=True)
    for ax, (key, title) in zip(axes, panels):
        values = [results[n][key] if results[n][key] is not None else 0.0 for n in names]
        colours = ["#555555" if n == "human" else "#3b75af" for n in names]
        ax.barh(range(len(names)), values, color=colours)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names, fontsize=9)
    axes[0].invert_yaxis()
    fig.suptitle("SmolLM2-135M-Instruct continuing WikiText-2 test articles (human: the articles' own text)",
                 fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def table(results: dict[str, dict], counts: dict[str, dict]) -> str:
    def f(v, digits=3):
        return "–" if v is None else f"{v:.{digits}f}"

    lines = ["| setting | rep-4 | distinct-1 / 2 / 3 | loops | sentence sim. | log p | rollbacks | s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        c = counts.get(name, {})
        lines.append(f"| {name} | {f(r['rep_4'])} | {f(r['distinct_1'])} / {f(r['distinct_2'])} / "
                     f"{f(r['distinct_3'])} | {f(r['loops'], 2)} | {f(r['sentence_similarity'])} | "
                     f"{f(r['logp'], 2)} | {c.get('rollbacks', '–')} | {c.get('seconds', '–')} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=100)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-running", type=int, default=32)
    p.add_argument("--text", type=Path, default=TEXT)
    p.add_argument("--out", type=Path, default=Path("docs/repetition.png"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    print(cpu_line())
    if not args.text.exists():
        print(f"{args.text} is absent: the benchmark needs WikiText-2 test (../shared/data); skipped")
        return
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")

    from tokenloom.embed import default_embedder

    lm = tl.load("smollm2-135m-instruct", limits=RuntimeLimits(max_running=args.max_running))
    embedder = default_embedder()
    chosen = [a for a in articles(args.text) if len(a) > 200][: args.prompts]
    prompts, humans = [], []
    for article in chosen:
        sentence, rest = first_sentence(article)
        prompts.append(lm.tokenizer.encode(sentence))
        humans.append(lm.tokenizer.encode(rest, add_bos=False)[: args.max_tokens])
    print(f"{len(prompts)} prompts (first sentences of WikiText-2 test articles), {args.max_tokens} new tokens each\n")

    results, counts = {}, {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("human: log p", total=1)
        results["human"] = figures(humans, [lm.tokenizer.decode(h) for h in humans],
                                   continuation_logprobs_rows(lm, prompts, humans), embedder)
        progress.advance(task)
        for name in names:
            params = SamplingParams(max_tokens=args.max_tokens, ignore_eos=True, seed=args.seed, **SETTINGS[name])
            task = progress.add_task(name, total=len(prompts))
            start = time.perf_counter()
            done = generate(lm, prompts, params, progress, task)
            seconds = time.perf_counter() - start
            outputs = [c.token_ids for c in done]
            results[name] = figures(outputs, [c.text for c in done],
                                    continuation_logprobs_rows(lm, prompts, outputs), embedder)
            counts[name] = {"seconds": round(seconds), "tokens": sum(map(len, outputs))}
            if "semantic_repetition_threshold" in SETTINGS[name]:
                counts[name]["rollbacks"] = sum(getattr(c, "semantic_rollbacks", 0) for c in done)
    print()
    print(table(results, counts))
    plot(results, args.out)
    print(f"\nplot: {args.out}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "counts": counts, "cpu": cpu_line()}, indent=2))


def continuation_logprobs_rows(lm, prompts: list[list[int]], outputs: list[list[int]]) -> list[torch.Tensor]:
    """log P of each output's tokens after its own prompt, all scored in one batch."""
    pairs = [(prompt, output) for prompt, output in zip(prompts, outputs) if output]
    rows = lm.scheduler.score_many([(prompt + output[:-1], len(output)) for prompt, output in pairs])
    return [torch.log_softmax(logits, dim=-1)[torch.arange(len(output)), torch.tensor(output)]
            for logits, (_, output) in zip(rows, pairs)]


if __name__ == "__main__":
    main()
