"""Speculative decoding by prompt lookup against plain decoding, batch 1: summaries and retrieval answers.

    python benchmarks/speculative.py [--task summary|retrieval] [--articles 8] [--tokens 128]
                                     [--draft-tokens 5] [--precision float32|native] [--quick]

Prompts, --task summary: CNN/DailyMail test articles (../shared/data/cnndm_pointer_generator),
cut to --article-tokens tokens, in SmolLM2's chat template, asking for a three-sentence summary;
greedy decoding up to --tokens tokens (or EOS). --task retrieval: XQuAD-en questions
(../shared/data/squad_v1_dev_xquad_en) with their passage, as `tokenloom.rag.ask` prompts them
for written answers (`--free`; --style short: its few-shot prompt; chat: its instruction in the
chat template) and with its stop strings, so an answer is what `ask --free` would generate
from a perfect retrieval. Both models run with the prefix cache off,
so each generation computes its prompt. Per article, plain and speculative runs alternate
(--repeats times) and the fastest of each is kept, which damps the noise of a shared machine.

Reported: tokens per verify pass (accepted drafts + the token the pass chooses itself),
the share of drafted tokens accepted, whether the outputs are token for token equal, and
the speed-up of decoding (time for the whole generation minus the time to the first
token, plain / speculative) and end to end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import tokenloom as tl
from tokenloom.generation.scheduler import RuntimeLimits
from tokenloom.generation.speculative import PromptLookup
from tokenloom.model.blocks import machine_line

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = SHARED / "cnndm_pointer_generator" / "cnndm_test_stride23_500.jsonl"
QA = SHARED / "squad_v1_dev_xquad_en" / "xquad_en_flat.jsonl"


def prompts(lm, count: int, article_tokens: int) -> list[str]:
    out = []
    with open(DATA, encoding="utf-8") as lines:
        for line, _ in zip(lines, range(count)):
            article = lm.tokenizer.decode(lm.tokenizer.encode(json.loads(line)["article"])[:article_tokens])
            out.append(lm.tokenizer.apply_chat_template(
                [{"role": "user", "content": "Summarize this article in three sentences.\n\n" + article}]))
    return out


def retrieval_prompts(lm, count: int, style: str) -> list[str]:
    """One question per passage (the first), the passage as the only retrieved hit."""
    from tokenloom.rag.prompt import messages, short_prompt

    out, seen = [], set()
    with open(QA, encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if row["context"] in seen:
                continue
            seen.add(row["context"])
            passages = [(row["title"].replace("_", " "), row["context"])]
            out.append(short_prompt(row["question"], passages) if style == "short" else
                       lm.tokenizer.apply_chat_template(messages(row["question"], passages)))
            if len(out) == count:
                break
    return out


def timed(lm, prompt: str, params) -> tuple[float, list[int]]:
    start = time.perf_counter()
    completion = lm.generate(prompt, params)
    return time.perf_counter() - start, completion.token_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("summary", "retrieval"), default="summary")
    parser.add_argument("--style", choices=("short", "chat"), default="short", help="--task retrieval: ask's prompt style")
    parser.add_argument("--articles", type=int, default=8, help="articles, or questions with --task retrieval")
    parser.add_argument("--article-tokens", type=int, default=400)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--draft-tokens", type=int, default=5)
    parser.add_argument("--min-ngram", type=int, default=1)
    parser.add_argument("--max-ngram", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 on a machine shared with other work")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--quick", action="store_true", help="3 articles, 64 tokens, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.articles, args.tokens, args.repeats = 3, 64, 1

    if args.threads:
        torch.set_num_threads(args.threads)
    limits = RuntimeLimits(prefix_cache_tokens=0)
    plain = tl.load(precision=args.precision, limits=limits)
    fast = tl.LanguageModel(plain.model, plain.tokenizer, limits=limits,
                            speculative=PromptLookup(args.draft_tokens, args.max_ngram, args.min_ngram))
    stop = () if args.task == "summary" else (("\n\n",) if args.style == "chat" else ("\n\n", "\nQuestion:", "\n["))
    greedy = tl.SamplingParams(temperature=0, max_tokens=args.tokens, stop=stop)
    first = tl.SamplingParams(temperature=0, max_tokens=1)
    print(machine_line())
    what = (f"{args.articles} CNN/DM articles cut to {args.article_tokens} tokens" if args.task == "summary" else
            f"{args.articles} XQuAD-en questions with their passage, ask's {args.style!r} prompt and stops")
    print(f"SmolLM2-135M-Instruct, {args.precision}; {what}; greedy, up to {args.tokens} tokens; up to {args.draft_tokens} drafted tokens per step "
          f"(n-grams {args.min_ngram}..{args.max_ngram}); batch 1; {torch.get_num_threads()} torch threads")
    timed(plain, "Warm up.", greedy)
    totals = {"plain": 0.0, "fast": 0.0, "plain_decode": 0.0, "fast_decode": 0.0, "tokens": 0}
    equal = 0
    chosen = (prompts(plain, args.articles, args.article_tokens) if args.task == "summary" else
              retrieval_prompts(plain, args.articles, args.style))
    for i, prompt in enumerate(chosen):
        stats_before = fast.scheduler.speculator.stats.to_dict()
        prefill = min(timed(plain, prompt, first)[0] for _ in range(args.repeats))
        runs = {"plain": [], "fast": []}
        for _ in range(args.repeats):
            for name, lm in (("plain", plain), ("fast", fast)):
                runs[name].append(timed(lm, prompt, greedy))
        (t_plain, ids_plain), (t_fast, ids_fast) = min(runs["plain"]), min(runs["fast"])
        equal += ids_plain == ids_fast
        after = fast.scheduler.speculator.stats.to_dict()
        steps = (after["speculative_steps"] - stats_before["speculative_steps"]) / args.repeats
        totals["plain"] += t_plain
        totals["fast"] += t_fast
        totals["plain_decode"] += t_plain - prefill
        totals["fast_decode"] += t_fast - prefill
        totals["tokens"] += len(ids_plain)
        print(f"article {i}: {len(ids_plain)} tokens, plain {t_plain:.2f} s, speculative {t_fast:.2f} s "
              f"({steps:.0f} verify passes), equal: {ids_plain == ids_fast}")
    stats = fast.scheduler.speculator.stats
    print(f"tokens per verify pass: {stats.tokens_per_step:.2f}; drafted tokens accepted: {stats.acceptance:.1%}")
    print(f"outputs token for token equal to plain greedy: {equal} of {args.articles}")
    print(f"decode speed-up (time after the first token): {totals['plain_decode'] / totals['fast_decode']:.2f}x "
          f"({totals['tokens'] / totals['plain_decode']:.1f} -> {totals['tokens'] / totals['fast_decode']:.1f} "
          f"tokens/s)")
    print(f"end-to-end speed-up: {totals['plain'] / totals['fast']:.2f}x")


if __name__ == "__main__":
    main()
