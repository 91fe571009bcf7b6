"""KV cache layout for CPU decoding: per-sequence slots against paged blocks, on SmolLM2-135M's shapes.

    .venv/bin/python benchmarks/kv_layout.py [--threads 2] [--steps 20]

One decode step's attention over the cache, every layer (30 layers, 9 query heads in
3 groups, head size 64, float32), for a batch of sequences:

- slots (what tokenloom uses, model/kv_cache.py): each sequence owns a row of one
  (slots, Hkv, capacity, D) tensor per layer; the batch reads a view of rows [0, B),
  masked at each row's own length. Nothing is copied.
- paged: 16-position blocks from one pool, a block table per sequence (vLLM's
  layout). Without a paged attention kernel of its own, a CPU step gathers each
  sequence's blocks into (B, Hkv, S, D) with index_select, then runs the same
  attention.

Memory: slots hold capacity positions for every sequence (the longest live one, rounded
up to a power of two); blocks hold each sequence's length rounded up to 16. Printed
for a mixed batch whose lengths are spread evenly between 1/8 of the longest and the
longest itself.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

LAYERS, HKV, GROUPS, D, BLOCK = 30, 3, 3, 64, 16


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def attend(q, k, v, mask):
    scores = torch.matmul(q, k.transpose(-1, -2)) * D**-0.5  # (B, Hkv, G, S)
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)  # (B, Hkv, G, D)


def lengths_for(B: int, longest: int) -> list[int]:
    return [max(1, longest * (8 + 7 * i // max(1, B - 1)) // 15) if B > 1 else longest for i in range(B)]


def time_slots(B: int, lengths: list[int], steps: int) -> float:
    S = max(lengths)
    cache = [(torch.randn(B, HKV, S, D), torch.randn(B, HKV, S, D)) for _ in range(LAYERS)]
    q = torch.randn(B, HKV, GROUPS, D)
    mask = (torch.arange(S)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]
    def step():
        for k, v in cache:
            attend(q, k[:B, :, :S], v[:B, :, :S], mask)
    return _best(step, steps)


def time_paged(B: int, lengths: list[int], steps: int) -> float:
    S = -(-max(lengths) // BLOCK) * BLOCK
    per_seq = S // BLOCK
    n_blocks = B * per_seq
    pools = [(torch.randn(n_blocks, HKV, BLOCK, D), torch.randn(n_blocks, HKV, BLOCK, D)) for _ in range(LAYERS)]
    table = torch.randperm(n_blocks).view(B, per_seq)  # each sequence's blocks, scattered in the pool
    q = torch.randn(B, HKV, GROUPS, D)
    mask = (torch.arange(S)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]
    def step():
        for kp, vp in pools:
            k = kp.index_select(0, table.reshape(-1)).view(B, per_seq, HKV, BLOCK, D)
            v = vp.index_select(0, table.reshape(-1)).view(B, per_seq, HKV, BLOCK, D)
            k = k.permute(0, 2, 1, 3, 4).reshape(B, HKV, S, D)  # (B, Hkv, S, D)
            v = v.permute(0, 2, 1, 3, 4).reshape(B, HKV, S, D)
            attend(q, k, v, mask)
    return _best(step, steps)


def _best(fn, steps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def memory(lengths: list[int]) -> tuple[float, float]:
    """MB the slot pool and the block pool hold for these lengths."""
    per_position = 2 * LAYERS * HKV * D * 4
    capacity = 256
    while capacity < max(lengths):
        capacity *= 2
    slots = len(lengths) * capacity * per_position
    blocks = sum(-(-n // BLOCK) * BLOCK for n in lengths) * per_position
    return slots / 1e6, blocks / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_name()}, torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} threads")
    print(f"{'batch':>5s} {'longest':>7s} {'slots ms':>9s} {'paged ms':>9s} {'paged/slots':>11s} "
          f"{'slots MB':>9s} {'blocks MB':>9s}")
    with torch.inference_mode():
        for B in (1, 8, 16, 64):
            for longest in (128, 512, 2048):
                lengths = lengths_for(B, longest)
                slots, paged = time_slots(B, lengths, args.steps), time_paged(B, lengths, args.steps)
                mb_slots, mb_blocks = memory(lengths)
                print(f"{B:5d} {longest:7d} {1e3 * slots:9.2f} {1e3 * paged:9.2f} {paged / slots:10.2f}× "
                      f"{mb_slots:9.1f} {mb_blocks:9.1f}")


if __name__ == "__main__":
    main()
