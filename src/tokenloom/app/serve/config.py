"""ServeConfig: what `tokenloom serve` is started with, validated once.

The CLI's flags take their defaults from these declarations; `max_running` and
`max_queue` default to None, which leaves the runtime's own defaults
(`RuntimeLimits`) in force; `prefix_cache=False` sets its prefix cache to 0 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenloom.errors import InvalidArgument
from tokenloom.generation.params import check_int
from tokenloom.model.registry import DEFAULT_MODEL

PRECISIONS = ("auto", "native", "float32", "bfloat16")
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ServeConfig:
    """One server: which model it serves, where it listens, how much it admits."""

    model: str = DEFAULT_MODEL
    host: str = LOOPBACK
    port: int = 8000
    precision: str = "auto"
    device: str = "cpu"  # cpu | cuda | cuda:N (model/device.py)
    compile: bool = False
    max_running: int | None = None  # sequences decoded together; None: the runtime's default
    max_queue: int | None = None  # sequences waiting for a slot before requests get 429
    prefix_cache: bool = True  # reuse the KV cache of prompt prefixes seen before
    api_key: str | None = None  # when set, /v1/* and /tokenize need `Authorization: Bearer <key>`
    max_body_bytes: int = 4 * 2**20  # larger request bodies get 413

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise InvalidArgument(f"model must be a model name or path, got {self.model!r}")
        check_int("port", self.port, 0, 65535)
        if self.precision not in PRECISIONS:
            raise InvalidArgument(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("max_running", "max_queue"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        if self.api_key is not None and not self.api_key:
            raise InvalidArgument("api_key must be a non-empty string when given")
        check_int("max_body_bytes", self.max_body_bytes, 1024)

    @property
    def limits(self) -> dict[str, int]:
        """The runtime limits that were given (RuntimeLimits' keyword arguments)."""
        given = {"max_running": self.max_running, "max_queue": self.max_queue,
                 "prefix_cache_tokens": None if self.prefix_cache else 0}
        return {name: value for name, value in given.items() if value is not None}
