"""Training speed of the presets: ms per optimizer step and tokens/s, beside a nanoGPT-style reference.

    .venv/bin/python benchmarks/train_throughput.py --threads 2                 # each preset as it is
    .venv/bin/python benchmarks/train_throughput.py --threads 2 --eager         # no torch.compile
    .venv/bin/python benchmarks/train_throughput.py --threads 2 --compile       # torch.compile everywhere

Times full steps of the real loop (`Trainer.train_step`: windows from the memory-mapped
token file, forward, backward, clipping, AdamW) after a warm-up. A compiled model is
compiled first (`Trainer.warm_up`) and the time that took is printed; the compiler's cache
goes to a fresh temporary folder unless --warm-cache is given, so that figure is what a
first run on a new machine pays (a later run with the same shapes reads the cache and
pays a few seconds). The machine is shared,
so a fixed figure measured once is fragile; each round therefore also times a reference
in the same process on the same windows: `ReferenceGPT`, a GPT-2 model built and trained
the way nanoGPT's train.py does on a CPU (LayerNorm without bias, GELU MLP of width 4·d,
causal scaled-dot-product attention, learned positions, tied head; plain AdamW with
β2 = 0.99, since nanoGPT asks for the fused kernel on CUDA only; global clipping at 1.0;
the batch stacked from per-row slices; the loss read back every step, as log_interval=1
does). The two take turns of 50 steps, so both see the same load, and medians of single
steps are reported (with glibc told to keep freed memory: see `keep_freed_memory`); ratio = ours / the reference, below 1 is faster. Issue 6's fixed figure
(nanoGPT itself on this machine: 33 ms per iteration) is printed beside it.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokenloom.training import build_config
from tokenloom.training import distributed
from tokenloom.training.config import TrainConfig
from tokenloom.training.data import WindowSampler
from tokenloom.training.trainer import Trainer, build_model, lr_at, prepare_run

NANOGPT_MS = {"shakespeare-char-cpu": 33.0}  # issue 6: nanoGPT's train.py, 2 threads, the CPU of docs/performance.md


# -- the reference ----------------------------------------------------------------
class RefAttention(nn.Module):
    """Causal self-attention, one projection for q, k and v."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))  # (B, T, C)


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, bias=False), RefAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim, bias=False), nn.GELU(),
                                 nn.Linear(4 * dim, dim, bias=False), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class ReferenceGPT(nn.Module):
    """GPT-2 as nanoGPT shapes it: token + learned position embeddings, pre-norm blocks, tied head."""

    def __init__(self, vocab: int, c: TrainConfig):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, c.dim), nn.Embedding(c.context, c.dim)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(RefBlock(c.dim, c.heads, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.dim, bias=False)
        generator = torch.Generator().manual_seed(c.seed)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                residual = name.endswith(("proj.weight", "mlp.2.weight"))
                std = 0.02 / math.sqrt(2 * c.layers) if residual else 0.02
                with torch.no_grad():
                    p.normal_(0.0, std, generator=generator)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = idx.shape
        x = self.drop(self.tokens(idx) + self.positions(torch.arange(T)))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = F.linear(self.norm(x), self.tokens.weight)  # (B, T, V)
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


class ReferenceRun:
    """The reference's training step, drawing the same windows as the trainer (same seed)."""

    def __init__(self, c: TrainConfig, train_ids: np.ndarray, vocab: int):
        self.c, self.ids, self.step = c, train_ids, 0
        self.model = ReferenceGPT(vocab, c).train()
        params = list(self.model.parameters())
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": c.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=c.lr, betas=(c.beta1, c.beta2))
        self.sampler = WindowSampler(len(train_ids), c.context, c.seed)

    def train_step(self) -> float:
        c = self.c
        starts = self.sampler.draw(c.batch_size).tolist()
        x = torch.stack([torch.from_numpy(self.ids[s:s + c.context].astype(np.int64)) for s in starts])  # (B, T)
        y = torch.stack([torch.from_numpy(self.ids[s + 1:s + 1 + c.context].astype(np.int64)) for s in starts])
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, c)
        _, loss = self.model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss.item()


# -- timing -----------------------------------------------------------------------
def timed(step) -> float:
    """ms that one call of `step` took."""
    start = time.perf_counter()
    step()
    return 1000.0 * (time.perf_counter() - start)


BLOCK = 50  # steps of one model in a row before the other's turn


def time_preset(name: str, steps: int, rounds: int, compile_model: bool | None, reference: bool) -> dict:
    """ms of every timed step, after warm-up, for the trainer and the reference, in turns of BLOCK steps.

    Turns put both under the same load, and the median of many single steps ignores the
    few that another process stalled. Turns of one step each would follow the load more
    closely, but then each model finds its weights and activations evicted from the
    caches by the other's on every step.
    """
    with tempfile.TemporaryDirectory() as out:
        config = build_config(name, out=out, compile=compile_model)
        ctx = distributed.Dist()
        data = prepare_run(config, ctx)
        trainer = Trainer(config, ctx, data, build_model(config, data.tokenizer.vocab_size))
        ref = ReferenceRun(config, data.train, data.tokenizer.vocab_size) if reference else None
        compile_s = trainer.warm_up()
        for _ in range(10 if steps > 10 else 2):
            trainer.train_step()
            if ref:
                ref.train_step()
        ours, theirs = [[] for _ in range(rounds)], [[] for _ in range(rounds)]
        for r in range(rounds):
            for _ in range(max(1, steps // BLOCK)):
                ours[r].extend(timed(trainer.train_step) for _ in range(min(BLOCK, steps)))
                if ref:
                    theirs[r].extend(timed(ref.train_step) for _ in range(min(BLOCK, steps)))
            trainer.take_train_loss()  # the loop reads the loss back only every few steps
        return {"ours": ours, "reference": theirs, "compile_s": compile_s, "compiled": trainer.compiled,
                "config": config}


def spread(rounds: list[list[float]]) -> str:
    """The median over all steps, and the spread of the per-round medians."""
    medians = [statistics.median(r) for r in rounds]
    return (f"median {statistics.median([x for r in rounds for x in r]):.1f} ms/step; per-round medians "
            f"{min(medians):.1f} to {max(medians):.1f} ({', '.join(f'{m:.1f}' for m in medians)})")


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process instead of handing it back to the OS.

    Two models taking turns in one process free and reallocate their activations in a
    pattern that makes glibc trim its heap and map fresh pages on nearly every step,
    which slows both sides (docs/performance.md, "Training against nanoGPT"). Either one run alone (as nanoGPT and `tokenloom train` are) does not pay it.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_TRIM_THRESHOLD, 2**30)) and bool(libc.mallopt(M_MMAP_THRESHOLD, 2**30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--compile", dest="compile", action="store_const", const=True,
                      help="torch.compile every preset's model (never the reference's)")
    mode.add_argument("--eager", dest="compile", action="store_const", const=False, help="compile no model")
    parser.add_argument("--warm-cache", action="store_true", help="keep torch.compile's usual on-disk cache")
    parser.add_argument("--no-reference", action="store_true", help="time the trainer only")
    parser.add_argument("--presets", nargs="+", default=["shakespeare-char-cpu", "shakespeare-char"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()
    if not args.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cache-")
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()}, "
          f"freed memory {'kept in the process' if kept else 'handed back to the OS (glibc not found)'}")
    for name in args.presets:
        steps = 50 if build_config(name).dim <= 128 else 3
        load_before = os.getloadavg()[0]
        r = time_preset(name, steps, args.rounds, args.compile, not args.no_reference)
        ours, theirs, c = r["ours"], r["reference"], r["config"]
        median = statistics.median([x for rnd in ours for x in rnd])
        print(f"{name} ({c.arch}, {'compiled' if r['compiled'] else 'eager'}), {args.rounds} rounds of {steps} steps, "
              f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
        if r["compiled"]:
            cache = "the usual cache" if args.warm_cache else "a fresh cache"
            print(f"  torch.compile took {r['compile_s']:.1f} s once, before the timed steps ({cache})")
        print(f"  tokenloom: {spread(ours)}; {c.tokens_per_step * 1000 / median:,.0f} tokens/s")
        if theirs[0]:
            ref_median = statistics.median([x for rnd in theirs for x in rnd])
            ratios = [statistics.median(a) / statistics.median(b) for a, b in zip(ours, theirs)]
            print(f"  reference (nanoGPT-style GPT-2, same shape): {spread(theirs)}; "
                  f"{c.tokens_per_step * 1000 / ref_median:,.0f} tokens/s")
            print(f"  ours / reference: {median / ref_median:.2f} (per round {', '.join(f'{x:.2f}' for x in ratios)})")
        if name in NANOGPT_MS:
            print(f"  issue 6's fixed figure for nanoGPT: {NANOGPT_MS[name]:.0f} ms/iter, "
                  f"ours / that {median / NANOGPT_MS[name]:.2f}", flush=True)


if __name__ == "__main__":
    main()
