"""Perplexity: tokenloom against the Hugging Face sliding-window recipe, same GGUF, windows, dtype.

    python benchmarks/perplexity_vs_transformers.py --context 512 --stride 512 --tokens 8192
    python benchmarks/perplexity_vs_transformers.py --context 2048 --stride 512 --tokens 8192

Both sides score exactly the same targets with exactly the same contexts (the
windows of `tokenloom.eval.scoring.plan_windows`). The Hugging Face side is the
recipe of its "Perplexity of fixed-length models" guide: one window per forward
pass, `model(input_ids, labels=target_ids)` with -100 on the context-only
positions, NLL summed as loss x scored tokens. Its input is ids[b : e+1], one token
longer than ours, because `labels` can only score tokens that are also inputs.

Prints both perplexities, their relative difference, scored tokens per second and
the speed ratio (ours / transformers), measured in one process, each after one
warm-up window. With --rounds N the two sides take N turns each, alternating, and
the ratio is that of the summed times: a slow spell of a shared machine then falls
on both sides alike. Two clocks: wall time, and the CPU time of this process (all
its threads), which is the fairer one on a machine shared with other jobs: it
counts the work done, not the time spent waiting for a core.

It also prints the float32 ceiling: the multiply-adds that scoring these windows
takes in any implementation (`float32_work`), against the CPU's multiply-add peak measured by benchmarks/fma_peak.c. That
gives the least time any float32 implementation could take here, and so the highest
ratio to the recipe that this machine allows.

TOKENLOOM_NATIVE_KERNELS=0 in the environment measures tokenloom with PyTorch's
operations instead of its own CPU kernels (tokenloom.model.native).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch

import tokenloom as tl
from tokenloom.eval.perplexity import perplexity
from tokenloom.eval.scoring import plan_windows
from tokenloom.model import native
from tokenloom.model.registry import resolve

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext2" / "wiki.test.raw"


def load_hf(name: str, dtype: torch.dtype):
    import transformers

    _, path = resolve(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    return model.eval()


def float32_work(config, windows) -> float:
    """FLOPs (a multiply-add counts 2) that scoring `windows` takes at the least.

    Every block at every input position, except that the last block needs only the keys
    and values of the positions whose outputs are not scored (a window's last `scored`
    inputs predict its targets); causal attention over the pairs each query sees; the
    output layer at the scored positions alone.
    """
    hd = config.head_dim
    q_o = 2 * config.n_heads * hd * config.dim  # query and output projections
    k_v = 2 * config.n_kv_heads * hd * config.dim
    mlp = (3 if config.mlp == "swiglu" else 2) * config.hidden_dim * config.dim  # gate, up, down / up, down
    pair = 2 * config.n_heads * hd  # q·k and p·v for one query and one visible key, all heads

    def seen(a: int, b: int) -> int:  # keys seen by the queries at positions a..b-1 together
        return (b * (b + 1) - a * (a + 1)) // 2

    macs = 0
    for w in windows:
        length, kept = w.end - w.begin, w.scored
        macs += (config.n_layers - 1) * (length * (q_o + k_v + mlp) + pair * seen(0, length))
        macs += length * k_v + kept * (q_o + mlp) + pair * seen(length - kept, length)  # the last block
        macs += kept * config.dim * config.vocab_size  # the output layer
    return 2.0 * macs


def fma_peak(threads: int) -> float | None:
    """The CPU's float32 multiply-add peak in FLOP/s on `threads` threads, or None (no compiler, no AVX-512)."""
    compiler = native.c_compiler()
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / "fma_peak"
        try:
            subprocess.run([compiler, "-O2", "-march=x86-64-v4", "-fopenmp", "-o", str(program),
                            str(Path(__file__).with_name("fma_peak.c"))], check=True, capture_output=True)
            out = subprocess.run([str(program)], check=True, capture_output=True, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        except (OSError, subprocess.CalledProcessError):  # no AVX-512 (SIGILL), or no OpenMP
            return None
    return float(out.stdout) * 1e9


class Clock:
    """Wall and process CPU seconds of the blocks it times, summed."""

    wall = cpu = 0.0

    def __enter__(self):
        self.started = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self.started[0]
        self.cpu += time.process_time() - self.started[1]
        return False


def hf_recipe(model, ids: torch.Tensor, context: int, stride: int) -> tuple[float, int]:
    """(Σ NLL, tokens) with the Hugging Face guide's loop on our windows."""
    nll_sum, tokens = 0.0, 0
    with torch.inference_mode():
        for w in plan_windows(len(ids), context, stride):
            input_ids = ids[None, w.begin : w.end + 1]
            target_ids = input_ids.clone()
            target_ids[:, : w.first - w.begin] = -100  # context only
            loss = model(input_ids, labels=target_ids).loss
            nll_sum += float(loss) * w.scored
            tokens += w.scored
    return nll_sum, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=WIKITEXT)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--stride", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=8192, help="score the first N tokens only (0: whole file)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: tokenloom's (about 2,048 tokens)")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--rounds", type=int, default=1, help="alternating turns of each side")
    args = parser.parse_args()
    from tokenloom.model.blocks import machine_line

    print(machine_line())
    lm = tl.load(args.model, precision=args.precision)
    ids = lm.tokenizer.encode(args.file.read_text(encoding="utf-8"))
    if args.tokens:
        ids = ids[: args.tokens]
    text = lm.tokenizer.decode(ids)
    ids = torch.tensor(lm.tokenizer.encode(text))  # what perplexity() will score
    print(f"{args.file.name}: {len(ids)} tokens, context {args.context}, stride {args.stride}, "
          f"{args.precision}, torch threads {torch.get_num_threads()}, "
          f"tokenloom CPU kernels: {'yes' if native.available() else 'no (PyTorch)'}")

    options = dict(context=args.context, stride=args.stride, batch_size=args.batch_size)
    warm = lm.tokenizer.decode(ids[: min(len(ids), args.context)].tolist())
    perplexity(lm, warm, **options)
    hf = load_hf(args.model, torch.float32 if args.precision == "float32" else torch.bfloat16)
    hf_recipe(hf, ids[: min(len(ids), args.context + 1)], args.context, args.stride)
    ours_t, hf_t = Clock(), Clock()
    for turn in range(args.rounds):
        wall, hf_wall = ours_t.wall, hf_t.wall
        with ours_t:
            ours = perplexity(lm, text, **options)
        with hf_t:
            hf_nll, hf_tokens = hf_recipe(hf, ids, args.context, args.stride)
        if args.rounds > 1:
            print(f"turn {turn + 1}: tokenloom {ours_t.wall - wall:.1f} s, transformers {hf_t.wall - hf_wall:.1f} s, "
                  f"ratio {(hf_t.wall - hf_wall) / (ours_t.wall - wall):.2f}x")
    hf_ppl = math.exp(hf_nll / hf_tokens)

    assert hf_tokens == ours.tokens, (hf_tokens, ours.tokens)
    scored = hf_tokens * args.rounds
    for name, ppl, clock in (("tokenloom", ours.perplexity, ours_t), ("transformers", hf_ppl, hf_t)):
        print(f"{name:13s} ppl {ppl:.4f}  {hf_tokens} tokens x {args.rounds}  wall {clock.wall:7.1f} s "
              f"({scored / clock.wall:6.1f} tok/s)  cpu {clock.cpu:7.1f} s ({scored / clock.cpu:6.1f} tok/cpu-s)")
    print(f"relative difference {abs(ours.perplexity - hf_ppl) / hf_ppl:.2e}; speed ratio (transformers time / ours): "
          f"wall {hf_t.wall / ours_t.wall:.2f}x, cpu {hf_t.cpu / ours_t.cpu:.2f}x  (batch {args.batch_size or 'default'})")

    if args.precision == "float32" and (peak := fma_peak(torch.get_num_threads())):
        work = float32_work(lm.model.config, plan_windows(len(ids), args.context, args.stride)) * args.rounds
        least = work / peak
        print(f"float32 ceiling: {work / args.rounds / 1e9:.1f} GFLOP a turn at the CPU's multiply-add peak of "
              f"{peak / 1e9:.1f} GFLOP/s (benchmarks/fma_peak.c) takes at least {least / args.rounds:.1f} s; "
              f"tokenloom runs at {least / ours_t.wall:.0%} of that peak, transformers at {least / hf_t.wall:.0%}; "
              f"the highest ratio any float32 implementation could show here: {hf_t.wall / least:.2f}x")


if __name__ == "__main__":
    main()
