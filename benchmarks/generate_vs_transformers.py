"""tokenloom against `transformers` on the same GGUF model, same prompts, one process.

    python benchmarks/generate_vs_transformers.py [--tokens 128] [--quick]

Decode speed is (new tokens − 1) / (time for all of them − time for the first one), so
prefill is left out on both sides. Bandwidth = bytes of weights read per step × steps/s
(every weight is read once per decode step, whatever the batch size).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch

import tokenloom as tl
from tokenloom.model.registry import resolve

SHORT = "The history of the printing press begins in the fifteenth century, when"
LONG_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext2" / "wiki.test.raw"


def long_prompt(lm, tokens: int = 500) -> str:
    try:
        text = open(LONG_SOURCE, encoding="utf-8").read()[:20000]
    except OSError:
        text = (SHORT + " ") * 80
    return lm.tokenizer.decode(lm.tokenizer.encode(text)[:tokens])


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ours_decode(lm, prompts, n_new, **sampling) -> float:
    def run(count):
        params = tl.SamplingParams(max_tokens=count, ignore_eos=True, seed=0, **sampling)
        return lambda: lm.generate(prompts, params)

    first = min(timed(run(1)) for _ in range(2))
    total = timed(run(n_new))
    return len(prompts) * (n_new - 1) / (total - first)


def hf_decode(model, tokenizer, prompts, n_new, **sampling) -> float:
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    kwargs = dict(do_sample=False) if not sampling else dict(do_sample=True, **sampling)

    def run(count):
        return lambda: model.generate(**batch, max_new_tokens=count, min_new_tokens=count, pad_token_id=2, **kwargs)

    with torch.inference_mode():
        first = min(timed(run(1)) for _ in range(2))
        total = timed(run(n_new))
    return len(prompts) * (n_new - 1) / (total - first)


def load_hf(dtype):
    import transformers

    _, path = resolve("smollm2-135m-instruct")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    return model.eval(), tokenizer


def load_times() -> tuple[float, float]:
    """Seconds from load call to the first generated token, ours and transformers'."""
    start = time.perf_counter()
    lm = tl.load("smollm2-135m-instruct", precision="float32")  # like for like: transformers dequantizes to float32
    lm.generate(SHORT, tl.SamplingParams(temperature=0, max_tokens=1))
    ours = time.perf_counter() - start
    start = time.perf_counter()
    model, tokenizer = load_hf(torch.float32)
    with torch.inference_mode():
        model.generate(**tokenizer(SHORT, return_tensors="pt"), max_new_tokens=1, do_sample=False, pad_token_id=2)
    return ours, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="short prompt, greedy, batch 1 only")
    args = parser.parse_args()
    torch.set_num_threads(2)
    ours_load, hf_load = load_times()
    rows = [("load → first token (s)", ours_load, hf_load, hf_load / ours_load, "")]
    for precision, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        lm = tl.load("smollm2-135m-instruct", precision=precision)
        model, tokenizer = load_hf(dtype)
        size = weight_bytes(lm.model)
        cases = [("greedy, batch 1, short prompt", [SHORT], {})]
        if not args.quick:
            cases += [
                ("greedy, batch 1, ~500-token prompt", [long_prompt(lm)], {}),
                ("sampled (k=50, p=0.9, T=0.8), batch 1", [SHORT], dict(top_k=50, top_p=0.9, temperature=0.8)),
                ("greedy, batch 8", [SHORT] * 8, {}),
            ]
        for name, prompts, sampling in cases:
            ours_sampling = dict(temperature=0) if not sampling else sampling
            ours = ours_decode(lm, prompts, args.tokens, **ours_sampling)
            theirs = hf_decode(model, tokenizer, prompts, args.tokens, **sampling)
            steps = ours / len(prompts)
            rows.append((f"{precision}: {name} (tok/s)", ours, theirs, ours / theirs, f"{size * steps / 1e9:.1f} GB/s"))
    print(f"{'case':58s} {'tokenloom':>10s} {'transformers':>13s} {'ratio':>7s}  bandwidth (ours)")
    for name, ours, theirs, ratio, bandwidth in rows:
        print(f"{name:58s} {ours:10.2f} {theirs:13.2f} {ratio:6.2f}×  {bandwidth}")


if __name__ == "__main__":
    main()
