"""SamplingParams: every knob of one generation request, validated once.

Field names and defaults follow OpenAI and vLLM, so a request body maps onto this
dataclass field by field. The defaults leave the distribution untouched:
temperature 1 with every filter and penalty off is *full random sampling*, a draw
from P_i = exp(l_i) / Σ_j exp(l_j) over the whole vocabulary.

Conventions (decided here, relied on by the sampler):
- temperature = 0 means greedy (argmax). Positive temperatures below 1e-05 are
  refused: l / T overflows float32 there and the softmax turns into NaN.
- top_k = 0 means off; -1 (vLLM's spelling of "off") is accepted and stored as 0.
- top_p = 1, typical_p = 1, min_p = 0, repetition_penalty = 1 and the zero
  penalties are no-ops; the sampler leaves such processors out of its chain.
- max_tokens defaults to 16, as in the OpenAI completions API and vLLM.
- stop accepts one string or a list of strings and is stored as a tuple.
- logit_bias maps token id -> bias in [-100, 100] (OpenAI's range); keys may be
  strings of digits, as they arrive in JSON, and are stored as ints.
- dry_* are llama-server's DRY fields (dry.py): dry_multiplier = 0 is off;
  dry_penalty_last_n = -1 scans the whole context (llama.cpp's older default and
  spelling; llama.cpp 0.3.36 defaults to 64), 0 is off; dry_sequence_breakers
  accepts a list of non-empty strings and is stored as a tuple.
- semantic_repetition_threshold (None = off) is a cosine similarity in (0, 1]: a
  generated sentence that close to an earlier one of the same output is rolled back
  and resampled, at most semantic_max_retries times per sentence (semantic.py).
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from tokenloom.errors import InvalidArgument

ORDERS = ("tokenloom", "hf", "vllm", "llama.cpp")
MIN_TEMPERATURE = 1e-5


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    def text(v: float) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)
    left = "(-∞" if low is None else ("(" if low_open else "[") + text(low)
    right = "∞)" if high is None else text(high) + (")" if high_open else "]")
    return f"{left}, {right}"


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, note: str = "") -> float:
    """Return `value` as a float, or raise InvalidArgument naming field, value and range.

    check_float("top_p", 1.5, 0, 1, low_open=True) raises
    "top_p must be in (0, 1], got 1.5".
    """
    allowed = _interval(low, high, low_open, high_open) + note
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidArgument(f"{name} must be a number in {allowed}, got {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high or math.isinf(value):
        raise InvalidArgument(f"{name} must be in {allowed}, got {value:g}")
    return value


def check_int(name: str, value: Any, low: int = 0, high: int | None = None, note: str = "") -> int:
    """Return `value` as an int in [low, high], or raise InvalidArgument (bools are refused)."""
    allowed = _interval(low, high, False, False) + note
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an integer in {allowed}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise InvalidArgument(f"{name} must be in {allowed}, got {value}")
    return value


def check_token_ids(name: str, ids: Any) -> tuple[int, ...]:
    """A tuple of token ids (integers >= 0) from one id or an iterable of ids."""
    if isinstance(ids, int) and not isinstance(ids, bool):
        ids = (ids,)
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise InvalidArgument(f"{name} must be a list of token ids (integers >= 0), got {ids!r}")
    return tuple(check_int(f"{name}[{i}]", token) for i, token in enumerate(ids))


def _check_stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
        raise InvalidArgument(f"stop must be a non-empty string or a list of them, got {stop!r}")
    return tuple(stop)


def _check_breakers(breakers: Any) -> tuple[str, ...]:
    if isinstance(breakers, str) or not isinstance(breakers, (list, tuple)) or not all(
            isinstance(b, str) and b for b in breakers):
        raise InvalidArgument(f"dry_sequence_breakers must be a list of non-empty strings, got {breakers!r}")
    return tuple(breakers)


def _check_logit_bias(bias: Any) -> dict[int, float] | None:
    if bias is None:
        return None
    if not isinstance(bias, dict):
        raise InvalidArgument(f"logit_bias must map token ids to biases in [-100, 100], got {bias!r}")
    clean = {}
    for key, value in bias.items():
        token = int(key) if isinstance(key, str) and key.isdigit() else key
        token = check_int("logit_bias token id", token)
        clean[token] = check_float(f"logit_bias[{token}]", value, -100.0, 100.0)
    return clean or None


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token, and when to stop. Validated at construction.

    >>> SamplingParams(top_p=0.9, temperature=0.8, seed=0).greedy
    False
    >>> SamplingParams(top_p=1.5)
    Traceback (most recent call last):
    tokenloom.errors.InvalidArgument: top_p must be in (0, 1], got 1.5
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    logit_bias: dict[int, float] | None = None
    min_tokens: int = 0
    max_tokens: int = 16
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    n: int = 1
    logprobs: int | None = None
    order: str = "tokenloom"
    ignore_eos: bool = False  # keep going past EOS (benchmarks, fixed-length tests), as in vLLM
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1
    dry_sequence_breakers: tuple[str, ...] = ("\n", ":", "\"", "*")
    semantic_repetition_threshold: float | None = None  # the semantic repetition guard (semantic.py)
    semantic_max_retries: int = 3

    def __post_init__(self) -> None:
        for name, value in self._validated().items():
            object.__setattr__(self, name, value)

    def _validated(self) -> dict[str, Any]:
        """Every field checked and normalised; one line per field."""
        temperature = check_float("temperature", self.temperature, 0.0)
        if 0.0 < temperature < MIN_TEMPERATURE:
            raise InvalidArgument(
                f"temperature must be 0 (greedy) or in [{MIN_TEMPERATURE:g}, ∞), got {temperature:g}")
        top_k = 0 if self.top_k == -1 and not isinstance(self.top_k, bool) else self.top_k
        max_tokens = check_int("max_tokens", self.max_tokens, 1)
        return {
            "temperature": temperature,
            "top_k": check_int("top_k", top_k, 0, note=" (0 or -1 = off)"),
            "top_p": check_float("top_p", self.top_p, 0.0, 1.0, low_open=True),
            "min_p": check_float("min_p", self.min_p, 0.0, 1.0),
            "typical_p": check_float("typical_p", self.typical_p, 0.0, 1.0, low_open=True),
            "repetition_penalty": check_float("repetition_penalty", self.repetition_penalty, 0.0, None, True),
            "presence_penalty": check_float("presence_penalty", self.presence_penalty, -2.0, 2.0),
            "frequency_penalty": check_float("frequency_penalty", self.frequency_penalty, -2.0, 2.0),
            "no_repeat_ngram_size": check_int("no_repeat_ngram_size", self.no_repeat_ngram_size, 0),
            "logit_bias": _check_logit_bias(self.logit_bias),
            "min_tokens": check_int("min_tokens", self.min_tokens, 0, max_tokens,
                                    note=" (at most max_tokens)"),
            "max_tokens": max_tokens,
            "stop": _check_stop(self.stop),
            "stop_token_ids": check_token_ids("stop_token_ids", self.stop_token_ids),
            "seed": None if self.seed is None else check_int("seed", self.seed, 0, 2**63 - 1),
            "n": check_int("n", self.n, 1),
            "logprobs": None if self.logprobs is None else check_int("logprobs", self.logprobs, 0, 20),
            "order": self._checked_order(),
            "ignore_eos": self._checked_flag("ignore_eos", self.ignore_eos),
            "dry_multiplier": check_float("dry_multiplier", self.dry_multiplier, 0.0, note=" (0 = off)"),
            "dry_base": check_float("dry_base", self.dry_base, 1.0),
            "dry_allowed_length": check_int("dry_allowed_length", self.dry_allowed_length, 0),
            "dry_penalty_last_n": check_int("dry_penalty_last_n", self.dry_penalty_last_n, -1,
                                            note=" (-1 = the whole context, 0 = off)"),
            "dry_sequence_breakers": _check_breakers(self.dry_sequence_breakers),
            "semantic_repetition_threshold": None if self.semantic_repetition_threshold is None else check_float(
                "semantic_repetition_threshold", self.semantic_repetition_threshold, 0.0, 1.0, low_open=True),
            "semantic_max_retries": check_int("semantic_max_retries", self.semantic_max_retries, 0),
        }

    @staticmethod
    def _checked_flag(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise InvalidArgument(f"{name} must be true or false, got {value!r}")
        return value

    def _checked_order(self) -> str:
        if self.order not in ORDERS:
            raise InvalidArgument(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        return self.order

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
        (seed, max_tokens, stop, stop_token_ids, n, logprobs, min_tokens).
        """
        shaping = set(fields) & set(_SHAPING_FIELDS)
        if shaping:
            raise InvalidArgument(
                f"full_random takes no distribution-shaping field, got {', '.join(sorted(shaping))}")
        return cls(**fields)


_SHAPING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
                   "presence_penalty", "frequency_penalty", "no_repeat_ngram_size", "logit_bias",
                   "dry_multiplier")
