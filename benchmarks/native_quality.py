"""What native precision costs in quality: WikiText-2 perplexity and next-token distributions.

    .venv/bin/python benchmarks/native_quality.py [--tokens 65536] [--context 512]

The same GGUF runs twice over the same disjoint windows of WikiText-2's raw test set:
dequantized to float32 (the exact reference) and in native precision (4-bit blocks in
PyTorch's int4 kernel, bfloat16 activations). Printed, the way llama.cpp's
`llama-perplexity --kl-divergence` reports a quantization: the perplexity of both and
their ratio, the mean, median and 99th-percentile KL(P_float32 ‖ P_native) per token,
and how often the two agree on the most likely next token.

The output layer (the file's Q8_0 tied embedding) has no exact PyTorch kernel, so it
is measured under each choice on the same final hidden states: Q8_0 split into
two 4-bit planes (the native default, exact up to bfloat16 scales), int8 with one
scale per row, 4-bit groups of 32, and bfloat16.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import tokenloom as tl
from tokenloom.model import quant
from tokenloom.model.blocks import machine_line
from tokenloom.model.gguf import GGUFFile
from tokenloom.model.kernels import Linear

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext2" / "wiki.test.raw"


class Int8PerRow(torch.nn.Module):
    """The alternative to `quant.Q8Linear`: requantize to 8-bit codes with one scale per output row,
    for PyTorch's int8 weight-only kernel (`_weight_int8pack_mm`)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.in_features = weight.shape[1]
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # (N,)
        self.codes = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.scale = scale.to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        if rows.shape[0] >= quant.DENSE_ROWS:
            y = torch.nn.functional.linear(rows, self.codes.to(torch.bfloat16)) * self.scale
        else:
            y = torch.ops.aten._weight_int8pack_mm(rows, self.codes, self.scale)
        return y.view(*x.shape[:-1], -1)


def output_layers(lm) -> dict[str, torch.nn.Module]:
    """The choices for the output layer, all built from the file's own embedding blocks."""
    blocks = GGUFFile(lm.source).blocks("token_embd.weight")
    weight = blocks.dequantize()
    dense = Linear(weight.shape[1], weight.shape[0], bias=False)
    dense.weight = torch.nn.Parameter(weight.to(torch.bfloat16), requires_grad=False)
    dense.pack()
    own = {"the model's own (native default)": lm.model.head} if lm.model.head is not None else {}
    return {
        **own,
        "Q8_0 as two 4-bit planes": quant.Q8Linear(blocks),
        "int8, one scale per row": Int8PerRow(weight),
        "int4 groups of 32": quant.Int4Linear(*quant.quantize_int4(weight)),
        "bfloat16": dense,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=65536, help="tokens of the test set to score (0: all)")
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a registered name or a .gguf file")
    parser.add_argument("--text", type=Path, default=WIKITEXT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()}")
    print(machine_line())

    exact = tl.load(args.model, precision="float32")
    native = tl.load(args.model, precision="native")
    heads = output_layers(native)
    ids = torch.tensor(exact.tokenizer.encode(args.text.read_text(encoding="utf-8")))
    if args.tokens:
        ids = ids[: args.tokens + 1]
    n_windows = (len(ids) - 1) // args.context
    nll_exact, nll = 0.0, dict.fromkeys(heads, 0.0)
    kl, agree = {name: [] for name in heads}, dict.fromkeys(heads, 0)
    start = time.perf_counter()
    with torch.inference_mode():
        for w in range(n_windows):
            window = ids[w * args.context : (w + 1) * args.context + 1]
            inputs, targets = window[:-1][None], window[1:]
            logp_exact = exact.model(inputs)[0].float().log_softmax(-1)  # (T, V)
            nll_exact -= logp_exact.gather(1, targets[:, None]).sum().item()
            hidden = native.model.hidden(inputs)[0]  # (T, C)
            if w % 50 == 0:
                print(f"window {w}/{n_windows}, {time.perf_counter() - start:.0f} s", flush=True)
            for name, head in heads.items():
                logp = head(hidden).float().log_softmax(-1)
                nll[name] -= logp.gather(1, targets[:, None]).sum().item()
                kl[name].append((logp_exact.exp() * (logp_exact - logp)).sum(-1))
                agree[name] += (logp.argmax(-1) == logp_exact.argmax(-1)).sum().item()
    scored = n_windows * args.context
    ppl_exact = torch.tensor(nll_exact / scored).exp().item()
    print(f"WikiText-2 raw test, {scored} tokens in {n_windows} disjoint windows of {args.context}, "
          f"{time.perf_counter() - start:.0f} s")
    print(f"float32 (dequantized GGUF): perplexity {ppl_exact:.4f}")
    print(f"{'native, output layer':<32}{'perplexity':>11}{'vs f32':>9}{'mean KL':>10}{'median':>10}{'p99 KL':>9}{'same top-1':>12}")
    for name in heads:
        ppl = torch.tensor(nll[name] / scored).exp().item()
        values = torch.cat(kl[name]).double()
        print(f"{name:<32}{ppl:>11.4f}{100 * (ppl / ppl_exact - 1):>+8.2f}%{values.mean().item():>10.5f}"
              f"{values.median().item():>10.5f}{values.quantile(0.99).item():>9.4f}{100 * agree[name] / scored:>11.2f}%")


if __name__ == "__main__":
    main()
