"""The fused decode step on native weights alone: its time for B rows, and what a verify pass costs.

    .venv/bin/python benchmarks/decode_step.py [--rows 1,2,3,4,8,16] [--context 300] [--seconds 3]

SmolLM2-135M-Instruct's GGUF, every layer of one decode step in one call
(model/fused_decode.py, csrc/qdecode.c), without the embedding lookup, the final norm and the
output layer. Two shapes of batch:

- distinct: B sequences, each in its own slot of the KV pool at `--context` positions, one new
  position each (a serving step);
- same slot: B new positions of one sequence (a speculative verify pass over B - 1 drafted
  tokens), which the step computes as a causal chunk.

Printed per B: milliseconds per step (the best of three timed stretches) and the cost relative
to one row. No peer runs here: `decode_vs_llamacpp.py` compares whole steps with llama.cpp.
"""

from __future__ import annotations

import argparse
import time

import torch

import tokenloom as tl
from tokenloom.model.blocks import machine_line


def timed(step, seconds: float) -> float:
    """Best milliseconds per call over three stretches of `seconds` / 3."""
    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(3):
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 3:
            step()
            calls += 1
        best = min(best, (time.perf_counter() - start) / calls * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,2,3,4,8,16")
    parser.add_argument("--context", type=int, default=300, help="positions already in each sequence's cache")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed per (rows, shape)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    try:
        rows = [int(r) for r in args.rows.split(",")]
    except ValueError:
        parser.error(f"--rows takes a comma-separated list of positive integers, got {args.rows!r}")
    if min(rows) < 1 or args.context < 1:
        parser.error("--rows and --context must be at least 1")
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    lm = tl.load("smollm2-135m-instruct")
    model = lm.model
    if model.fused_decoder is None:
        raise SystemExit("this machine runs no fused decode step (see the WARNING above)")
    print(machine_line())
    pool = model.new_kv_pool()
    pool.reserve(max(rows), args.context + max(rows) + 1)
    prompt = (lm.tokenizer.encode("The river runs past the mill and on to the sea. ") * 200)[: args.context]
    for slot in range(max(rows)):
        lm.engine.prefill(pool, slot, prompt, 0)
    x = {b: torch.randn(b, model.config.dim, generator=torch.Generator().manual_seed(b)) for b in rows}
    print(f"{args.context} positions in cache, {args.threads} threads")
    print(f"{'rows':>4}  {'distinct ms':>11}  {'vs 1 row':>8}  {'same slot ms':>12}  {'vs 1 row':>8}")
    base = {}
    for b in rows:
        distinct = pool.decode_view(list(range(b)), [args.context] * b)
        same = pool.decode_view([0] * b, list(range(args.context, args.context + b)))
        d = timed(lambda: model.fused_decoder(x[b].clone(), distinct), args.seconds)
        s = timed(lambda: model.fused_decoder(x[b].clone(), same), args.seconds)
        base.setdefault("d", d)
        base.setdefault("s", s)
        print(f"{b:>4}  {d:>11.2f}  {d / base['d']:>7.2f}x  {s:>12.2f}  {s / base['s']:>7.2f}x")


if __name__ == "__main__":
    main()
