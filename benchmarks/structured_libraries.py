"""Three constrained-decoding libraries on the SmolLM2 vocabulary (49,152 tokens), batch 1.

    PYTHONPATH=src python benchmarks/structured_libraries.py

For llguidance (what tokenloom uses), xgrammar and outlines-core: building the
library's tokenizer from our token bytes, compiling a 7-field schema (nested object,
enum array, bounded numbers, a pattern, optional fields), and per token of a valid
instance the time to compute the next-token mask and to advance by the token (median
and 90th percentile over three passes). A library that is not installed is skipped
with a note: xgrammar's wheel requires torch and triton, so it is measured from
`pip install --no-deps --target DIR xgrammar apache-tvm-ffi` with DIR on PYTHONPATH.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np

import tokenloom as tl
from tokenloom.generation.structured import token_bytes
from tokenloom.model.blocks import machine_line

SCHEMA = {"type": "object", "properties": {
    "id": {"type": "integer", "minimum": 1}, "name": {"type": "string", "maxLength": 40},
    "email": {"type": "string", "format": "email"},
    "roles": {"type": "array", "items": {"type": "string", "enum": ["admin", "editor", "viewer"]}, "minItems": 1},
    "address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"},
                                                 "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["city", "zip"]},
    "score": {"type": "number", "minimum": 0, "maximum": 100}, "active": {"type": "boolean"}},
    "required": ["id", "name", "roles", "address", "active"], "additionalProperties": False}
INSTANCE = {"id": 42, "name": "Ada Lovelace", "email": "ada@example.com", "roles": ["admin", "viewer"],
            "address": {"city": "London", "zip": "12345"}, "score": 99.5, "active": True}


def allowed(bitmask, token: int) -> bool:
    return bool((int(bitmask[0, token // 32]) >> (token % 32)) & 1)


def walk(ids, reset, fill, advance, bitmask):
    """Time fill (the mask) and advance (the token) along ids, three passes."""
    masks, steps = [], []
    for _ in range(3):
        reset()
        for token in ids:
            start = time.perf_counter()
            fill()
            masks.append(time.perf_counter() - start)
            assert allowed(bitmask, token), token
            start = time.perf_counter()
            advance(token)
            steps.append(time.perf_counter() - start)
    return masks, steps


def llguidance_run(tokens, special, tok, ids):
    import llguidance
    from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

    class Vocabulary:
        eos_token_id, bos_token_id, special_token_ids = tok.eos_ids[0], tok.special.bos_id, special

        def __call__(self, text):
            return tok.encode(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)

    vocab = Vocabulary()
    vocab.tokens = [b"\xff" + t if i in special else t for i, t in enumerate(tokens)]
    start = time.perf_counter()
    lltok = llguidance.LLTokenizer(llguidance.TokenizerWrapper(vocab))
    build = time.perf_counter() - start
    start = time.perf_counter()
    matcher = llguidance.LLMatcher(lltok, llguidance.LLMatcher.grammar_from_json_schema(json.dumps(SCHEMA)))
    compiled = time.perf_counter() - start
    bitmask = allocate_token_bitmask(1, len(tokens))
    return (build, compiled, *walk(ids, matcher.reset, lambda: fill_next_token_bitmask(matcher, bitmask, 0),
                                   matcher.consume_token, bitmask))


def xgrammar_run(tokens, special, tok, ids):
    import xgrammar

    start = time.perf_counter()
    info = xgrammar.TokenizerInfo(tokens, vocab_type=xgrammar.VocabType.RAW, vocab_size=len(tokens),
                                  stop_token_ids=list(tok.eos_ids), add_prefix_space=False)
    build = time.perf_counter() - start
    compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    start = time.perf_counter()
    matcher = xgrammar.GrammarMatcher(compiler.compile_json_schema(json.dumps(SCHEMA), any_whitespace=False))
    compiled = time.perf_counter() - start
    bitmask = xgrammar.allocate_token_bitmask(1, len(tokens))
    return (build, compiled, *walk(ids, matcher.reset, lambda: matcher.fill_next_token_bitmask(bitmask, 0),
                                   matcher.accept_token, bitmask))


def outlines_core_run(tokens, special, tok, ids):
    import outlines_core
    from outlines_core.kernels.torch import allocate_token_bitmask, fill_next_token_bitmask

    start = time.perf_counter()
    by_bytes: dict[bytes, list[int]] = {}
    for i, t in enumerate(tokens):
        if i not in special:
            by_bytes.setdefault(t, []).append(i)
    vocabulary = outlines_core.Vocabulary(tok.eos_ids[0], by_bytes)
    build = time.perf_counter() - start
    start = time.perf_counter()
    index = outlines_core.Index(outlines_core.json_schema.build_regex_from_schema(json.dumps(SCHEMA)), vocabulary)
    compiled = time.perf_counter() - start
    guide = [outlines_core.Guide(index)]
    bitmask = allocate_token_bitmask(len(tokens))

    def reset():
        guide[0] = outlines_core.Guide(index)

    return (build, compiled, *walk(ids, reset, lambda: fill_next_token_bitmask(guide[0], bitmask),
                                   lambda t: guide[0].advance(t), bitmask))


def main() -> None:
    print(machine_line())
    tok = tl.load("smollm2-135m-instruct").tokenizer
    tokens, special = token_bytes(tok)
    ids = tok.encode(json.dumps(INSTANCE))
    print(f"vocabulary {len(tokens)} tokens; instance of {len(ids)} tokens\n")
    print("| library | tokenizer build | schema compile | mask / token (median, p90) | advance / token |")
    print("|---|---|---|---|---|")
    for name, run in (("llguidance", llguidance_run), ("xgrammar", xgrammar_run),
                      ("outlines-core", outlines_core_run)):
        try:
            build, compiled, masks, steps = run(tokens, special, tok, ids)
        except ImportError as error:
            print(f"| {name} | not installed ({error.name}) | | | |")
            continue
        print(f"| {name} | {build * 1e3:.0f} ms | {compiled * 1e3:.1f} ms | {statistics.median(masks) * 1e6:.1f} µs, "
              f"{np.percentile(masks, 90) * 1e6:.1f} µs | {statistics.median(steps) * 1e6:.1f} µs |")


if __name__ == "__main__":
    main()
