"""Training speed of the presets: ms per optimizer step and tokens/s, against nanoGPT's figure.

    .venv/bin/python benchmarks/train_throughput.py --threads 2

Times full steps of the real loop (`Trainer.train_step`: windows from the memory-mapped
token file, forward, backward, clipping, AdamW) after a warm-up, several rounds each, and
prints the median and the spread. The reference is nanoGPT's baby-GPT configuration on
this machine: 33 ms per iteration (issue 6); ratio = ours / nanoGPT's, below 1 is faster.
The machine is shared, so read the spread and the load average printed with each run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from tokenloom.training import build_config
from tokenloom.training import distributed
from tokenloom.training.trainer import Trainer, build_model, prepare_run

NANOGPT_MS = {"shakespeare-char-cpu": 33.0}


def time_preset(name: str, steps: int, rounds: int, compile_model: bool) -> list[float]:
    """ms per step of each round, after warm-up."""
    with tempfile.TemporaryDirectory() as out:
        config = build_config(name, out=out, compile=compile_model or None)
        ctx = distributed.Dist()
        data = prepare_run(config, ctx)
        trainer = Trainer(config, ctx, data, build_model(config, data.tokenizer.vocab_size))
        for _ in range(10 if steps > 10 else 2):
            trainer.train_step()
        results = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            trainer.take_train_loss()  # one host sync per round, as the loop does at evaluation
            results.append(1000.0 * (time.perf_counter() - start) / steps)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--presets", nargs="+", default=["shakespeare-char-cpu", "shakespeare-char"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()}")
    for name in args.presets:
        config = build_config(name)
        steps = 50 if config.dim <= 128 else 3
        ms = time_preset(name, steps, args.rounds, args.compile)
        median = statistics.median(ms)
        line = (f"{name}: {median:.1f} ms/step (rounds: {', '.join(f'{m:.1f}' for m in ms)}), "
                f"{config.tokens_per_step * 1000 / median:,.0f} tokens/s")
        if name in NANOGPT_MS:
            line += f"; nanoGPT {NANOGPT_MS[name]:.0f} ms/iter, ratio {median / NANOGPT_MS[name]:.2f}"
        print(line, f"[load {os.getloadavg()[0]:.1f}]", flush=True)


if __name__ == "__main__":
    main()
