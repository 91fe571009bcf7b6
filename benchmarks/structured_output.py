"""Structured output's cost and validity on SmolLM2-135M-Instruct (native precision), batch 1.

    PYTHONPATH=src python benchmarks/structured_output.py [--schemas 8] [--repeats 3] [--validity]

Per token: each schema's prompt is generated greedily under its schema (T tokens), then
without a constraint for exactly T tokens (ignore_eos), alternating, `repeats` times; the
extra time per token is the ratio of the medians. The mask's own share (computing it,
applying it, advancing the matcher) is timed inside the processor too, which is less
noisy than the difference of two end-to-end runs on a shared machine. Compile: a
schema's llguidance grammar built and checked (cache cleared), plus one matcher.
--validity: every schema of tests/generation/data/json_schemas.json, four sequences at a
time; the share whose output parses and validates (jsonschema, with format checks).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import tokenloom as tl
from tokenloom.generation import structured
from tokenloom.generation.constraints import compile_grammar
from tokenloom.generation.scheduler import RuntimeLimits
from tokenloom.model.blocks import machine_line

SCHEMAS = json.loads((Path(__file__).resolve().parents[1] / "tests" / "generation" / "data"
                      / "json_schemas.json").read_text())


class MaskClock:
    """Wraps StructuredOutput's __call__ and accept to add up the time spent in them."""

    def __init__(self):
        self.seconds = 0.0
        self.calls = 0
        for name in ("__call__", "accept"):
            original = getattr(structured.StructuredOutput, name)
            setattr(structured.StructuredOutput, name, self._timed(original, name == "__call__"))

    def _timed(self, original, counts: bool):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += counts
        return run


def prompt_of(lm, item: dict) -> str:
    return lm.tokenizer.apply_chat_template([{"role": "user", "content": item["prompt"]}])


def per_token(lm, items: list[dict], repeats: int, clock: MaskClock) -> dict:
    constrained, free, mask = [], [], []
    for item in items:
        prompt = prompt_of(lm, item)
        params = tl.SamplingParams(json_schema=item["schema"], temperature=0, max_tokens=160)
        lm.generate(prompt, params)  # warm: the prompt's prefix cache, the compiled grammar
        for _ in range(repeats):
            seconds, calls = clock.seconds, clock.calls
            start = time.perf_counter()
            done = lm.generate(prompt, params)
            constrained.append((time.perf_counter() - start) / done.completion_tokens)
            mask.append((clock.seconds - seconds) / max(clock.calls - calls, 1))
            plain = tl.SamplingParams(temperature=0, max_tokens=done.completion_tokens, ignore_eos=True)
            start = time.perf_counter()
            lm.generate(prompt, plain)
            free.append((time.perf_counter() - start) / done.completion_tokens)
    return {"constrained": statistics.median(constrained), "free": statistics.median(free),
            "mask": statistics.median(mask)}


def compile_times(lm, items: list[dict]) -> list[float]:
    llg = structured.llguidance_module()
    tokenizer = structured.ll_tokenizer(lm.tokenizer)
    out = []
    for item in items:
        compile_grammar.cache_clear()
        start = time.perf_counter()
        grammar = compile_grammar("json_schema", json.dumps(item["schema"]))
        llg.LLMatcher(tokenizer, grammar, log_level=0)
        out.append(time.perf_counter() - start)
    return out


def validity(repetition_penalty: float = 1.0) -> tuple[int, int, float]:
    import jsonschema

    lm = tl.load("smollm2-135m-instruct", limits=RuntimeLimits(max_running=4))
    batch = [(prompt_of(lm, item), tl.SamplingParams(json_schema=item["schema"], temperature=0, max_tokens=192,
                                                     repetition_penalty=repetition_penalty))
             for item in SCHEMAS]
    start = time.perf_counter()
    completions = lm.generate_batch(batch)
    seconds = time.perf_counter() - start
    good = 0
    for item, completion in zip(SCHEMAS, completions):
        try:
            jsonschema.validate(json.loads(completion.text), item["schema"],
                                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
            good += 1
        except (json.JSONDecodeError, jsonschema.ValidationError) as error:
            print(f"  invalid: {item['name']} ({completion.finish_reason}): {str(error)[:120]}")
    return good, len(SCHEMAS), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemas", type=int, default=8, help="schemas timed at batch 1 (the first N of the set)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--validity", action="store_true", help="also generate every schema of the set")
    args = parser.parse_args()
    print(machine_line())
    lm = tl.load("smollm2-135m-instruct")
    clock = MaskClock()
    items = SCHEMAS[: args.schemas]
    t = per_token(lm, items, args.repeats, clock)
    extra = t["constrained"] / t["free"] - 1
    print(f"batch 1, {len(items)} schemas x {args.repeats}: {t['free'] * 1e3:.1f} ms/token free, "
          f"{t['constrained'] * 1e3:.1f} ms/token under a schema ({extra:+.1%} end to end); "
          f"the mask itself {t['mask'] * 1e3:.3f} ms/token ({t['mask'] / t['free']:.1%} of a free token)")
    compiled = compile_times(lm, SCHEMAS)
    print(f"compile a schema (grammar + matcher), {len(compiled)} schemas: "
          f"median {statistics.median(compiled) * 1e3:.1f} ms, max {max(compiled) * 1e3:.1f} ms")
    if args.validity:
        # Plain greedy can run a number's digits or a string on to max_tokens (a loop inside a
        # value the grammar cannot end); a light repetition penalty is the usual remedy.
        for penalty in (1.0, 1.1, 1.15):
            good, total, seconds = validity(penalty)
            print(f"validity, greedy, repetition_penalty {penalty}: {good}/{total} outputs parse and validate "
                  f"({good / total:.0%}), {seconds:.0f} s")


if __name__ == "__main__":
    main()
