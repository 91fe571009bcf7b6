"""Native-precision decoding against llama.cpp on the same GGUF file, in one process.

    .venv/bin/python benchmarks/decode_vs_llamacpp.py [--threads 2] [--tokens 128] [--compile]

llama.cpp comes from `llama-cpp-python`, an optional extra (`pip install
llama-cpp-python` builds llama.cpp from source, minutes on a small machine); without it
only our side and `transformers` are measured. Both engines run the same file, the
same token ids and the same number of threads, one after the other, in rounds, so
the machine's noise falls on both (the best round of each is reported):

- decode, batch 1: after a 5-token prompt, `--tokens` steps of one token each;
- decode, 8 sequences: 8 different 16-token prompts, then `--tokens` steps of 8 tokens;
- prompt processing: one 512-token prompt, in one pass.

Both sides compute the logits of every step and nothing else (no sampling), so the
rows compare the models' forward passes. Our own `generate()` (sampling, stop
checks, detokenization) is shown beside them, and against `transformers`, whose
GGUF loader dequantizes to float32 or bfloat16.

Bandwidth = bytes of weights read per step × steps per second: every weight is read
once per decode step, and the tied output layer reads the whole embedding matrix.
The machine's ceiling is the read bandwidth of a sum over 1 GiB with the same threads.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import tokenloom as tl
from tokenloom.model.blocks import machine_line
from tokenloom.model.gguf import GGUFFile
from tokenloom.model.registry import resolve

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext2" / "wiki.test.raw"
SHORT = "The history of the printing press begins in"


def read_ceiling(threads: int) -> float:
    """GB/s the CPU reads from memory: a sum over 1 GiB of float32."""
    data = torch.ones(256 * 1024 * 1024)
    data.sum()
    best = min(_timed(data.sum) for _ in range(3))
    return data.numel() * 4 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def native_bytes(model) -> int:
    """Bytes of weights one decode step reads: every matrix buffer, norms, not the embedding lookup."""
    total = 0
    for name, module in model.named_modules():
        if name == "embed":
            continue
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if name.endswith("cache") or tensor is getattr(module, "codes", None):
                continue  # the KV cache; the plain codes kept for long prompts
            total += tensor.numel() * tensor.element_size()
    return total


def file_bytes(path: Path) -> int:
    """Bytes of tensors llama.cpp reads per step: all of them (the tied output reads token_embd)."""
    return sum(info.data.nbytes for info in GGUFFile(path).tensors.values())


# -- our side -----------------------------------------------------------------------
class Ours:
    """The runtime's own forward passes (`Engine.prefill`, `Engine.decode`) over its KV pool."""

    def __init__(self, lm):
        self.model, self.engine = lm.model, lm.engine

    def decode(self, prompts: torch.Tensor, tokens: torch.Tensor) -> float:
        """Seconds for len(tokens) steps after the prompts; prompts (B, P), tokens (N, B)."""
        B, P = prompts.shape
        pool = self.model.new_kv_pool()
        pool.reserve(B, P + len(tokens))
        slots = list(range(B))
        with torch.inference_mode():
            for b in slots:
                self.engine.prefill(pool, b, prompts[b].tolist(), 0)
            start = time.perf_counter()
            for i, token in enumerate(tokens.tolist()):
                self.engine.decode(pool, slots, [P + i] * B, token)
            elapsed = time.perf_counter() - start
        return elapsed

    def prompt(self, ids: torch.Tensor) -> float:
        pool = self.model.new_kv_pool()
        pool.reserve(1, ids.shape[1])
        with torch.inference_mode():
            return _timed(lambda: self.engine.prefill(pool, 0, ids[0].tolist(), 0))


# -- llama.cpp ----------------------------------------------------------------------
class LlamaCpp:
    def __init__(self, path: Path, threads: int, n_seq: int, n_ctx: int):
        import llama_cpp

        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=threads,
                                   n_threads_batch=threads, verbose=False)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx * n_seq, 512, 512
        params.n_threads = params.n_threads_batch = threads
        params.n_seq_max = n_seq
        self.ctx = llama_cpp.llama_init_from_model(self.llm._model.model, params)
        self.batch = llama_cpp.llama_batch_init(512, 0, n_seq)

    def _decode(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode call; rows of (token, position, sequence, wants logits)."""
        b = self.batch
        b.n_tokens = len(rows)
        for i, (token, pos, seq, logits) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
            b.seq_id[i][0] = seq
        if self.lib.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def decode(self, prompts: torch.Tensor, tokens: torch.Tensor) -> float:
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        B, P = prompts.shape
        for seq, row in enumerate(prompts.tolist()):
            self._decode([(t, p, seq, p == P - 1) for p, t in enumerate(row)])
        start = time.perf_counter()
        for i, step in enumerate(tokens.tolist()):
            self._decode([(t, P + i, seq, True) for seq, t in enumerate(step)])
        return time.perf_counter() - start

    def prompt(self, ids: torch.Tensor) -> float:
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        row = ids[0].tolist()
        return _timed(lambda: self._decode([(t, p, 0, p == len(row) - 1) for p, t in enumerate(row)]))

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)
        self.llm.close()


def load_llamacpp(path: Path, threads: int, n_ctx: int):
    try:
        return LlamaCpp(path, threads, 8, n_ctx)
    except ImportError:
        print("llama-cpp-python is not installed: llama.cpp is skipped (pip install llama-cpp-python)")
        return None


def hf_generate_rate(dtype, prompt: str, n_new: int) -> float:
    """transformers' decode tok/s at batch 1 (greedy), prefill left out as in generate_vs_transformers.py."""
    from generate_vs_transformers import hf_decode, load_hf

    model, tokenizer = load_hf(dtype)
    return hf_decode(model, tokenizer, [prompt], n_new)


def ours_generate_rate(lm, prompt: str, n_new: int) -> float:
    from generate_vs_transformers import ours_decode

    return ours_decode(lm, [prompt], n_new, temperature=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time decode steps through torch.compile")
    parser.add_argument("--no-transformers", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()}")
    print(machine_line())
    _, path = resolve("smollm2-135m-instruct")

    lm = tl.load("smollm2-135m-instruct", precision="native")
    ids = lm.tokenizer.encode(TEXT.read_text(encoding="utf-8")[:60000])
    gen = torch.Generator().manual_seed(0)
    one_prompt = torch.tensor([lm.tokenizer.encode(SHORT)[:5]])
    one_tokens = torch.tensor(ids[: args.tokens])[:, None]  # (N, 1)
    eight_prompts = torch.tensor(ids[1000 : 1000 + 8 * 16]).view(8, 16)
    eight_tokens = torch.randint(0, lm.config.vocab_size, (args.tokens, 8), generator=gen)
    long_prompt = torch.tensor([ids[2000:2512]])

    engines = {"tokenloom": Ours(lm)}
    if args.compile:
        start = time.perf_counter()
        compiled = tl.load("smollm2-135m-instruct", precision="native", compile=True)
        engines["tokenloom (compiled)"] = Ours(compiled)
        engines["tokenloom (compiled)"].decode(one_prompt, one_tokens[:2])
        print(f"torch.compile, first decode step (compilation): {time.perf_counter() - start:.1f} s")
    cpp = load_llamacpp(path, args.threads, n_ctx=1024)
    if cpp is not None:
        engines["llama.cpp"] = cpp

    cases = {
        "decode, batch 1 (tok/s)": (lambda e: e.decode(one_prompt, one_tokens), args.tokens),
        "decode, 8 sequences (tok/s, all)": (lambda e: e.decode(eight_prompts, eight_tokens), 8 * args.tokens),
        "prompt processing, 512 tokens (tok/s)": (lambda e: e.prompt(long_prompt), 512),
    }
    best = {case: {} for case in cases}
    for _ in range(args.rounds):
        for case, (run, count) in cases.items():
            for name, engine in engines.items():
                if case.startswith("prompt") and "compiled" in name:
                    continue  # prefill is eager in both of ours
                best[case][name] = max(best[case].get(name, 0.0), count / run(engine))
    if cpp is not None:
        cpp.close()

    ceiling = read_ceiling(args.threads)
    ours_bytes, cpp_bytes = native_bytes(lm.model), file_bytes(path)
    print(f"weights read per decode step: tokenloom native {ours_bytes / 1e6:.1f} MB, llama.cpp {cpp_bytes / 1e6:.1f} MB; "
          f"read ceiling {ceiling:.1f} GB/s ({args.threads} threads)")
    print(f"{'case':40s} {'engine':22s} {'tok/s':>9s} {'vs llama.cpp':>13s} {'GB/s':>7s} {'of ceiling':>11s}")
    for case in cases:
        steps_per_token = 8 if "8 sequences" in case else 1
        for name, rate in best[case].items():
            ratio = f"{rate / best[case]['llama.cpp']:.2f}×" if "llama.cpp" in best[case] else "-"
            bandwidth = ""
            if case.startswith("decode"):
                size = cpp_bytes if name == "llama.cpp" else ours_bytes
                gbs = size * rate / steps_per_token / 1e9
                bandwidth = f"{gbs:7.1f} {100 * gbs / ceiling:10.0f}%"
            print(f"{case:40s} {name:22s} {rate:9.1f} {ratio:>13s} {bandwidth}")

    prompt = lm.tokenizer.decode(one_prompt[0].tolist())
    ours = ours_generate_rate(lm, prompt, args.tokens)
    print(f"\ntokenloom generate() end to end, batch 1, greedy: {ours:.1f} tok/s")
    if not args.no_transformers:
        for dtype in (torch.float32, torch.bfloat16):
            theirs = hf_generate_rate(dtype, prompt, args.tokens)
            print(f"  transformers generate(), {str(dtype)[6:]:8s}: {theirs:6.1f} tok/s -> tokenloom native is {ours / theirs:.2f}×")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
