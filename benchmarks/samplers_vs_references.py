"""Each sampler against its reference: the share of (prompt, setting) pairs where ours is identical.

References: llama.cpp's samplers through llama-cpp-python (XTC, top-nσ, dynamic
temperature, mirostat v1/v2, the llama.cpp preset's penalties and typical-p) and
transformers' warpers (epsilon, eta, top-p). "Identical" means bitwise-equal logits
where the step rescales or penalises, and equal kept sets where it only removes tokens;
for mirostat, equal kept sets at all 16 steps of a run fed llama.cpp's own draws.

    PYTHONPATH=src python benchmarks/samplers_vs_references.py [--prompts 24]

Prints a Markdown table and the CPU (torch.backends.cpu.get_cpu_capability()).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch
from transformers.generation import logits_process as hf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "generation"))
from llamacpp_oracle import Oracle  # noqa: E402

from tokenloom.generation.cutoffs import EpsilonCutoff, EtaCutoff  # noqa: E402
from tokenloom.generation.history import TokenHistory  # noqa: E402
from tokenloom.generation.llamacpp_samplers import (  # noqa: E402
    XTC, DynamicTemperature, LlamaTypical, Mirostat, Penalties, TopNSigma,
)
from tokenloom.generation.processors import TopP  # noqa: E402

PROMPTS = [
    "The cat sat on the", "Once upon a time", "The capital of France is", "def fibonacci(n):",
    "1, 2, 3, 4,", "I think that", "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "Question: What is the boiling point of water?\nAnswer:", "My favourite food is", "In 1492, Columbus",
    "The best way to learn a language is", "import numpy as np\n", "Dear Sir or Madam,", "The weather today",
    "Photosynthesis is the process", "She opened the door and", "Top 3 reasons to exercise:\n1.",
    "The meaning of life is", "Translate to French: cheese =>", "Roses are red, violets are",
    "The stock market fell because", "A haiku about autumn:\n", "SELECT * FROM", "He said that the",
]


def kept(scores: torch.Tensor) -> frozenset[int]:
    return frozenset(torch.nonzero(scores > float("-inf")).squeeze(-1).tolist())


def empty(vocab: int) -> TokenHistory:
    return TokenHistory([[]], vocab)


def cut(logits: torch.Tensor, k: int = 40) -> torch.Tensor:
    return logits.masked_fill(logits < logits.topk(k).values[-1], float("-inf"))


def llama_rows(oracle: Oracle, cases):
    lib, rows = oracle.module, {}

    def once(make, logits):
        sampler = make()
        try:
            return oracle.apply(sampler, logits), oracle.logits_after(sampler, logits)
        finally:
            lib.llama_sampler_free(sampler)

    for ids, logits in cases:
        v = logits.shape[0]
        for n in (0.5, 1.0, 2.0):
            _, theirs = once(lambda: lib.llama_sampler_init_top_n_sigma(n), logits)
            rows.setdefault("top-nσ", []).append(torch.equal(TopNSigma(n)(empty(v), logits[None])[0], theirs))
        for t, d, e in ((1.0, 0.5, 1.0), (0.8, 0.3, 2.0), (1.2, 1.0, 0.5)):
            _, theirs = once(lambda: lib.llama_sampler_init_temp_ext(t, d, e), logits)
            ours = DynamicTemperature(t, d, e)(empty(v), logits[None])[0]
            rows.setdefault("dynamic temperature", []).append(torch.equal(ours, theirs))
        for row in (logits, cut(logits)):
            for threshold in (0.05, 0.1):
                (got, _, _, _), _ = once(lambda: lib.llama_sampler_init_xtc(1.0, threshold, 1, 1), row)
                ours = kept(XTC(1.0, threshold, 1)(empty(v), row[None])[0])
                rows.setdefault("XTC (coin fired)", []).append(ours == frozenset(got.tolist()))
        for p in (0.5, 0.9, 0.95):
            (got, _, _, _), _ = once(lambda: lib.llama_sampler_init_typical(p, 0), logits)
            ours = kept(LlamaTypical(p)(empty(v), logits[None])[0])
            rows.setdefault("typical-p (llama.cpp preset)", []).append(ours == frozenset(got.tolist()))
        for rep, freq, pres in ((1.3, 0.0, 0.0), (1.1, 0.5, 0.3)):
            sampler = oracle.penalties(64, rep, freq, pres)
            for token in ids:
                lib.llama_sampler_accept(sampler, token)
            theirs = oracle.logits_after(sampler, logits)
            lib.llama_sampler_free(sampler)
            ours = Penalties(64, rep, freq, pres)(TokenHistory([ids], v), logits[None])[0]
            rows.setdefault("penalties (llama.cpp preset)", []).append(torch.equal(ours, theirs))
    return rows


def mirostat_rows(oracle: Oracle, cases, steps: int = 16):
    lib, rows = oracle.module, {}
    for start in range(len(cases)):
        for version, tau, eta in ((1, 5.0, 0.1), (2, 5.0, 0.1), (2, 3.0, 0.3)):
            v = cases[0][1].shape[0]
            theirs = lib.llama_sampler_init_mirostat(v, start, tau, eta, 100) if version == 1 \
                else lib.llama_sampler_init_mirostat_v2(start, tau, eta)
            ours, history, same = Mirostat(version, tau, eta, v), empty(v), True
            for step in range(steps):
                logits = cases[(start + step) % len(cases)][1]
                got, _, _, selected = oracle.apply(theirs, logits)
                scores = ours(history, logits[None])
                same &= kept(scores[0]) == frozenset(got.tolist())
                ours.accept(history, scores, torch.tensor([int(got[selected])]))
            lib.llama_sampler_free(theirs)
            rows.setdefault(f"mirostat v{version}", []).append(same)
    return rows


def hf_rows(cases):
    rows = {}
    for _, logits in cases:
        row, ids = logits[None], torch.zeros(1, 1, dtype=torch.long)
        v = logits.shape[0]
        for eps in (3e-4, 1e-3, 0.02):
            theirs = hf.EpsilonLogitsWarper(eps)(ids, row)
            rows.setdefault("epsilon", []).append(torch.equal(EpsilonCutoff(eps)(empty(v), row), theirs))
        for eta in (3e-4, 2e-3, 0.02):
            theirs = hf.EtaLogitsWarper(eta)(ids, row)
            rows.setdefault("eta", []).append(torch.equal(EtaCutoff(eta)(empty(v), row), theirs))
        for scale in (1.0, 1.5):
            for p in (0.5, 0.8, 0.9, 0.95):
                scaled = row / scale
                theirs = hf.TopPLogitsWarper(p)(ids, scaled).isfinite().sum()
                ours = TopP(p)(empty(v), scaled).isfinite().sum()
                rows.setdefault("top-p (kept count)", []).append(bool(ours == theirs))
    return rows


REFERENCES = {
    "top-nσ": "llama_sampler_init_top_n_sigma", "dynamic temperature": "llama_sampler_init_temp_ext",
    "XTC (coin fired)": "llama_sampler_init_xtc (probability 1)", "mirostat v1": "llama_sampler_init_mirostat",
    "mirostat v2": "llama_sampler_init_mirostat_v2", "typical-p (llama.cpp preset)": "llama_sampler_init_typical",
    "penalties (llama.cpp preset)": "llama_sampler_init_penalties (prompt accepted, last 64)",
    "epsilon": "transformers EpsilonLogitsWarper", "eta": "transformers EtaLogitsWarper",
    "top-p (kept count)": "transformers TopPLogitsWarper",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=len(PROMPTS))
    args = parser.parse_args()
    import llama_cpp

    import tokenloom as tl
    from tokenloom.model.registry import resolve

    lm = tl.load("smollm2-135m-instruct", precision="float32")
    cases = [(lm.encode_prompt(text), lm.next_token_logits(text).float()) for text in PROMPTS[: args.prompts]]
    _, path = resolve("smollm2-135m-instruct")
    oracle = Oracle(llama_cpp, llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False))
    rows = {**llama_rows(oracle, cases), **mirostat_rows(oracle, cases), **hf_rows(cases)}
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}; llama-cpp-python {llama_cpp.__version__}; "
          f"{len(cases)} prompts, SmolLM2-135M-Instruct float32 logits")
    print("\n| sampler | reference | identical |\n|---|---|---|")
    for name, results in rows.items():
        print(f"| {name} | {REFERENCES[name]} | {sum(results)}/{len(results)} "
              f"({100 * sum(results) / len(results):.1f}%) |")


if __name__ == "__main__":
    main()
