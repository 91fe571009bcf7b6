"""Declaring an option once: its checks, and the `option()` field that carries name, type,
default, range and help text for everyone who needs them.

`SamplingParams` declares every field with `option(...)`. From those declarations come
the validation in `__post_init__`, the server's request fields (app/serve/schemas.py),
the CLI's flags (app/sampling_cli.py), which fields build the processor chain
(`chain_fields`) and which reshape the distribution (`shaping_fields`). Adding an option
is one `option(...)` line plus the processor that uses it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenloom.errors import InvalidArgument


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


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be true or false, got {value!r}")
    return value


def check_strings(name: str, value: Any, what: str = "a list of non-empty strings") -> tuple[str, ...]:
    """A tuple of non-empty strings from a list or tuple of them (a bare string is refused)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(s, str) and s for s in value):
        raise InvalidArgument(f"{name} must be {what}, got {value!r}")
    return tuple(value)


# What a field is for, which decides where it goes:
#   "shape"    builds a processor (part of the chain key; refused by full_random)
#   "chain"    changes how the chain is built without reshaping on its own (order, samplers,
#              min_keep, penalty windows, stop_token_ids protected by min_tokens)
#   "sequence" acts per sequence (seed, max_tokens, stop strings, logprobs, ...)
KINDS = ("shape", "chain", "sequence")


@dataclass(frozen=True)
class Declaration:
    """What `option()` stores in a field's metadata."""

    help: str
    kind: str
    check: Callable[[str, Any], Any] | None
    low: float | None
    high: float | None
    low_open: bool
    high_open: bool
    note: str
    cli: bool  # offered as a `tokenloom generate` flag
    api: str | None = None  # the server's request field: None = the field's own name, "" = none

    def validate(self, name: str, value: Any, annotation: Any) -> Any:
        """The checked, normalised value: the declared check, else the numeric range for the type."""
        if self.check is not None:
            return self.check(name, value)
        if value is None and "None" in str(annotation):
            return None
        if "float" in str(annotation):
            return check_float(name, value, self.low, self.high, self.low_open, self.high_open, self.note)
        if "int" in str(annotation):
            return check_int(name, value, 0 if self.low is None else int(self.low),
                             None if self.high is None else int(self.high), self.note)
        return value

    def allowed(self) -> str:
        """The range in words for help texts, e.g. '(0, 1]'; empty when a check decides."""
        if self.low is None and self.high is None:
            return ""
        return _interval(self.low, self.high, self.low_open, self.high_open) + self.note


def option(default: Any, help: str, *, kind: str = "shape", check: Callable[[str, Any], Any] | None = None,
           low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, note: str = "", cli: bool = True, api: str | None = None) -> Any:
    """A dataclass field with its declaration; see the module docstring.

    api: the name the server's request field takes when a peer's API spells it so
    (vLLM's guided_json for json_schema); "" leaves the field out of requests.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    declaration = Declaration(help, kind, check, low, high, low_open, high_open, note, cli, api)
    return dataclasses.field(default=default, metadata={"option": declaration})


def declaration(field: dataclasses.Field) -> Declaration:
    return field.metadata["option"]


def declared_fields(cls) -> list[tuple[dataclasses.Field, Declaration]]:
    """Every field of a dataclass built with option(), in declaration order."""
    return [(f, declaration(f)) for f in dataclasses.fields(cls) if "option" in f.metadata]
