"""SamplingParams: every knob of one generation request, declared and validated once.

Field names and defaults follow OpenAI and vLLM, so a request body maps onto this
dataclass field by field; the samplers OpenAI lacks take llama-server's names (dry_*,
xtc_*, mirostat*, dynatemp_*, top_n_sigma, penalty_last_n, min_keep) or Hugging Face's
(epsilon_cutoff, eta_cutoff). Each field is one `option(...)` declaration (options.py):
its default, range and help text; the checks, the server's request fields and the CLI's
flags all come from it. The defaults leave the distribution untouched: temperature 1
with every filter and penalty off is *full random sampling*, a draw from
P_i = exp(l_i) / Σ_j exp(l_j) over the whole vocabulary.

Conventions (decided here, relied on by the sampler):
- temperature = 0 means greedy (argmax). Positive temperatures below 1e-05 are
  refused: l / T overflows float32 there and the softmax turns into NaN.
- top_k: None (unset) follows the preset: 50 under order="hf" (transformers'
  GenerationConfig default), off elsewhere; 0 is off; -1 (vLLM's "off") is stored as 0.
- penalty_last_n: None follows the preset: 64 under order="llama.cpp" (llama.cpp's
  default window), -1 (the whole context) elsewhere.
- top_p = 1, typical_p = 1, min_p = 0, repetition_penalty = 1, the zero penalties and
  cutoffs, xtc_probability = 0, top_n_sigma = 0 and mirostat = 0 are no-ops; the
  sampler leaves such processors out of its chain.
- samplers: a chain of step names of the user's choosing (chains.py), like llama.cpp's
  --samplers; None takes the chain of `order`, whose rules (ties, penalty coverage)
  apply either way.
- stop accepts one string or a list of strings and is stored as a tuple.
- logit_bias maps token id -> bias in [-100, 100] (OpenAI's range); keys may be
  strings of digits, as they arrive in JSON, and are stored as ints.
- json_schema, json_object, regex, choice, grammar: structured output (structured.py),
  at most one of them; each is compiled when the params are built, so a constraint
  the library cannot compile is refused here, with the part it rejects named. The
  server takes them as vLLM's guided_json, guided_regex, guided_choice, guided_grammar
  and OpenAI's response_format.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

from tokenloom.errors import InvalidArgument
from tokenloom.generation.chains import PRESET_NAMES, check_chain, check_samplers
from tokenloom.generation.options import (  # noqa: F401 (check_* re-exported for older imports)
    check_flag, check_float, check_int, check_strings, check_token_ids, declared_fields, option,
)
from tokenloom.generation.constraints import check_choice, check_constraints, check_json_schema, check_pattern

ORDERS = PRESET_NAMES
MIN_TEMPERATURE = 1e-5


def _check_temperature(name: str, value: Any) -> float:
    temperature = check_float(name, value, 0.0)
    if 0.0 < temperature < MIN_TEMPERATURE:
        raise InvalidArgument(f"{name} must be 0 (greedy) or in [{MIN_TEMPERATURE:g}, ∞), got {temperature:g}")
    return temperature


def _check_top_k(name: str, value: Any) -> int | None:
    if value is None:
        return None
    value = 0 if value == -1 and not isinstance(value, bool) else value
    return check_int(name, value, 0, note=" (0 or -1 = off; null = the preset's default)")


def _check_stop(name: str, stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    return check_strings(name, (stop,) if isinstance(stop, str) else stop,
                         "a non-empty string or a list of them")


def _check_logit_bias(name: str, bias: Any) -> dict[int, float] | None:
    if bias is None:
        return None
    if not isinstance(bias, dict):
        raise InvalidArgument(f"{name} must map token ids to biases in [-100, 100], got {bias!r}")
    clean = {}
    for key, value in bias.items():
        token = int(key) if isinstance(key, str) and key.isdigit() else key
        token = check_int(f"{name} token id", token)
        clean[token] = check_float(f"{name}[{token}]", value, -100.0, 100.0)
    return clean or None


def _check_order(name: str, value: Any) -> str:
    if value not in ORDERS:
        raise InvalidArgument(f"{name} must be one of {', '.join(ORDERS)}, got {value!r}")
    return value


def _optional(check):
    return lambda name, value: None if value is None else check(name, value)


def _check_top_n_sigma(name: str, value: Any) -> float:
    value = 0.0 if value == -1 and not isinstance(value, bool) else value  # llama-server's "off"
    return check_float(name, value, 0.0, note=" (0 or -1 = off)")


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token, and when to stop. Validated at construction.

    >>> SamplingParams(top_p=0.9, temperature=0.8, seed=0).greedy
    False
    >>> SamplingParams(top_p=1.5)
    Traceback (most recent call last):
    tokenloom.errors.InvalidArgument: top_p must be in (0, 1], got 1.5
    """

    temperature: float = option(1.0, "P_i = exp(l_i/T) / Σ_j exp(l_j/T); 0 = greedy", check=_check_temperature)
    top_k: int | None = option(None, "keep the k most likely tokens; 0 = off, unset = the preset's default",
                               check=_check_top_k)
    top_p: float = option(1.0, "keep the smallest set of most likely tokens whose mass reaches p",
                          low=0.0, high=1.0, low_open=True)
    min_p: float = option(0.0, "keep tokens with P_i >= p · max P", low=0.0, high=1.0)
    typical_p: float = option(1.0, "locally typical sampling with mass p", low=0.0, high=1.0, low_open=True)
    repetition_penalty: float = option(1.0, "CTRL's penalty θ on tokens already seen", low=0.0, low_open=True)
    presence_penalty: float = option(0.0, "l − α if the token was seen, else l", low=-2.0, high=2.0)
    frequency_penalty: float = option(0.0, "l − β·count", low=-2.0, high=2.0)
    penalty_last_n: int | None = option(
        None, "tokens the penalties look back over; -1 = the whole context, unset = the preset's default",
        kind="chain", check=_optional(lambda n, v: check_int(n, v, -1, note=" (-1 = the whole context)")))
    no_repeat_ngram_size: int = option(0, "forbid repeating any n-gram of this size; 0 = off")
    logit_bias: dict[int, float] | None = option(None, "token id -> bias added to its logit, in [-100, 100]",
                                                 check=_check_logit_bias)
    min_tokens: int = option(0, "ban the end ids until this many tokens were generated",
                             check=lambda name, value: value)  # checked against max_tokens below
    min_keep: int = option(0, "the truncation filters keep at least this many tokens", kind="chain")
    top_n_sigma: float = option(0.0, "keep logits within n standard deviations of the best; 0 = off",
                                check=_check_top_n_sigma)
    xtc_probability: float = option(0.0, "XTC: chance per step of excluding the top choices; 0 = off",
                                    low=0.0, high=1.0)
    xtc_threshold: float = option(0.1, "XTC: tokens at least this likely are top choices (> 0.5 = off)",
                                  kind="chain", low=0.0, high=1.0)
    epsilon_cutoff: float = option(0.0, "drop tokens with P_i below ε; 0 = off", low=0.0, high=1.0,
                                   high_open=True)
    eta_cutoff: float = option(0.0, "drop tokens below min(η, √η·exp(−H)); 0 = off", low=0.0, high=1.0,
                               high_open=True)
    dynatemp_range: float = option(0.0, "dynamic temperature: T ± range by normalised entropy; 0 = off",
                                   low=0.0)
    dynatemp_exponent: float = option(1.0, "dynamic temperature: exponent on the normalised entropy",
                                      kind="chain", low=0.0)
    mirostat: int = option(0, "mirostat version: 0 = off, 1 or 2 (replaces the chain by temperature → "
                              "mirostat)", high=2)
    mirostat_tau: float = option(5.0, "mirostat: target surprise in bits", kind="chain", low=0.0)
    mirostat_eta: float = option(0.1, "mirostat: learning rate of μ", kind="chain", low=0.0)
    dry_multiplier: float = option(0.0, "DRY penalty multiplier; 0 = off", low=0.0, note=" (0 = off)")
    dry_base: float = option(1.75, "DRY: base of the exponential penalty", kind="chain", low=1.0)
    dry_allowed_length: int = option(2, "DRY: repeats up to this length are free", kind="chain")
    dry_penalty_last_n: int = option(-1, "DRY: tokens scanned; -1 = the whole context, 0 = off",
                                     kind="chain", low=-1,
                                     note=" (-1 = the whole context, 0 = off)")
    dry_sequence_breakers: tuple[str, ...] = option(
        ("\n", ":", "\"", "*"), "DRY: strings that end a repeat", kind="chain", check=check_strings)
    json_schema: str | None = option(
        None, "structured output: an instance of this JSON schema (a dict or its JSON text; stored as JSON text)",
        check=check_json_schema, api="guided_json")
    json_object: bool = option(False, "structured output: any JSON object", check=check_flag, api="")
    regex: str | None = option(None, "structured output: text the regular expression matches in full",
                               check=check_pattern, api="guided_regex")
    choice: tuple[str, ...] | None = option(None, "structured output: exactly one of these strings",
                                            check=check_choice, api="guided_choice")
    grammar: str | None = option(None, "structured output: text of this GBNF (llama.cpp) or Lark grammar",
                                 check=check_pattern, api="guided_grammar")
    samplers: tuple[str, ...] | None = option(
        None, "the chain's steps in order (e.g. penalties;dry;top_k;top_p;temperature); unset = order's chain",
        kind="chain", check=_optional(check_samplers))
    order: str = option("tokenloom", "preset chain and rules: tokenloom | hf | vllm | llama.cpp",
                        kind="chain", check=_check_order)
    max_tokens: int = option(16, "tokens to generate at most", kind="sequence", low=1)
    stop: tuple[str, ...] = option((), "stop strings (not part of the output)", kind="sequence",
                                   check=_check_stop)
    stop_token_ids: tuple[int, ...] = option((), "token ids that end the output", kind="chain",
                                             check=check_token_ids)
    seed: int | None = option(None, "seed of the row's generator; unset = drawn from torch's", kind="sequence",
                              high=2**63 - 1)
    n: int = option(1, "samples per prompt", kind="sequence", low=1)
    logprobs: int | None = option(None, "log probabilities of the chosen token and this many alternatives",
                                  kind="sequence", high=20)
    ignore_eos: bool = option(False, "keep going past EOS (benchmarks, fixed-length tests)", kind="sequence",
                              check=check_flag)
    semantic_repetition_threshold: float | None = option(
        None, "semantic repetition guard: cosine similarity in (0, 1] that triggers a resample",
        kind="sequence", low=0.0, high=1.0, low_open=True)
    semantic_max_retries: int = option(3, "semantic guard: resamples per sentence at most", kind="sequence")

    def __post_init__(self) -> None:
        hints = {f.name: f.type for f in dataclasses.fields(self)}
        for field, declared in declared_fields(type(self)):
            value = declared.validate(field.name, getattr(self, field.name), hints[field.name])
            object.__setattr__(self, field.name, value)
        object.__setattr__(self, "min_tokens", check_int("min_tokens", self.min_tokens, 0, self.max_tokens,
                                                         note=" (at most max_tokens)"))
        check_chain(self)
        check_constraints(self)

    def __hash__(self) -> int:
        bias = tuple(sorted(self.logit_bias.items())) if self.logit_bias else None
        fields = (getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "logit_bias")
        return hash((*fields, bias))

    @property
    def greedy(self) -> bool:
        """True when temperature is 0: the next token is the argmax, no draw."""
        return self.temperature == 0.0

    @classmethod
    def full_random(cls, **fields: Any) -> "SamplingParams":
        """Temperature 1, every filter and penalty off: a draw from the model's own distribution.

        Only fields that do not reshape the distribution may be given
        (seed, max_tokens, stop, stop_token_ids, n, logprobs, min_tokens, ...).
        """
        shaping = set(fields) & set(shaping_fields()) - {"min_tokens"}
        if shaping:
            raise InvalidArgument(
                f"full_random takes no distribution-shaping field, got {', '.join(sorted(shaping))}")
        return cls(**fields)


def fields_of_kind(*kinds: str) -> tuple[str, ...]:
    return tuple(f.name for f, d in declared_fields(SamplingParams) if d.kind in kinds)


def shaping_fields() -> tuple[str, ...]:
    """Fields that build processors: what full_random refuses."""
    return fields_of_kind("shape")


def chain_fields() -> tuple[str, ...]:
    """Fields that decide the processor chain: rows equal on all of them share one sampler."""
    return fields_of_kind("shape", "chain")
