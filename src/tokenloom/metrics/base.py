"""What every metric shares: the signature string, argument checks and the registry.

A metric here computes sufficient statistics per segment, aggregates them, and
returns a small frozen result whose `signature` records every option, so that a
number can be reproduced (sacrebleu's habit):

    >>> format_signature({"nrefs": 1, "case": "mixed", "tok": "13a"})
    'nrefs:1|case:mixed|tok:13a|version:tokenloom-0.1.0'
"""

from collections.abc import Callable, Sequence

from tokenloom import __version__
from tokenloom.errors import InvalidArgument

VERSION = f"tokenloom-{__version__}"

_REGISTRY: dict[str, Callable] = {}


def format_signature(fields: dict) -> str:
    """'key:value|...' in the given order, `version` always last; None values are
    left out and booleans become yes/no."""
    pairs = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        pairs.append(f"{key}:{value}")
    pairs.append(f"version:{VERSION}")
    return "|".join(pairs)


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator: make a corpus-level metric function reachable as `get_metric(name)`."""

    def add(function: Callable) -> Callable:
        _REGISTRY[name] = function
        return function

    return add


def get_metric(name: str) -> Callable:
    """The corpus-level function registered under `name` ('bleu', 'chrf', 'rouge')."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise InvalidArgument(f"unknown metric {name!r}; known metrics: {known}") from None


def available_metrics() -> list[str]:
    """Names accepted by `get_metric`, sorted."""
    return sorted(_REGISTRY)


def check_choice(name: str, value, allowed: Sequence) -> None:
    """Raise InvalidArgument unless `value` is one of `allowed`."""
    if value not in allowed:
        choices = ", ".join(map(str, allowed))
        raise InvalidArgument(f"{name} must be one of {choices}; got {value!r}")


def transpose_references(
    hypotheses: Sequence[str], references: Sequence[Sequence[str | None]]
) -> list[list[str]]:
    """sacrebleu's layout (one stream per reference set) -> one list per segment.

    `references=[["r1a", "r2a"], ["r1b", None]]` (2 streams, 2 segments) gives
    `[["r1a", "r1b"], ["r2a"]]`: a None is a missing reference for that segment.
    """
    if isinstance(hypotheses, str):
        raise InvalidArgument("hypotheses must be a sequence of strings, not one string")
    if isinstance(references, str) or not references or isinstance(references[0], str):
        raise InvalidArgument(
            "references must be a list of reference streams, e.g. [refs] or [refs_a, refs_b]"
        )
    for index, stream in enumerate(references):
        if len(stream) != len(hypotheses):
            raise InvalidArgument(
                f"reference stream {index + 1} has {len(stream)} segments, "
                f"but there are {len(hypotheses)} hypotheses"
            )
    return [[ref for ref in refs if ref is not None] for refs in zip(*references)]


def count_references(per_segment: Sequence[Sequence[str]]) -> int | str:
    """The `nrefs` signature field: the number of references, or 'var' if it varies."""
    sizes = {len(refs) for refs in per_segment}
    return sizes.pop() if len(sizes) == 1 else "var"
