"""What the runtime runs at once, and the error for a queue at its limit."""

from __future__ import annotations

from dataclasses import dataclass

from tokenloom.errors import TokenloomError
from tokenloom.generation.params import check_int


class QueueFull(TokenloomError):
    """The runtime's queue of waiting requests is at its limit; try again later."""


@dataclass(frozen=True)
class RuntimeLimits:
    """Bounds on what runs at once.

    max_running: sequences decoding together; max_queue: requests waiting for a slot;
    max_cache_tokens: positions of KV memory for running sequences (the pool);
    prefix_cache_tokens: positions kept for prefix reuse (0 turns it off);
    prefill_chunk: prompt tokens computed per step.
    """

    max_running: int = 16
    max_queue: int = 256
    max_cache_tokens: int = 65536
    prefix_cache_tokens: int = 16384
    prefill_chunk: int = 512

    def __post_init__(self):
        check_int("max_running", self.max_running, 1, 4096)
        check_int("max_queue", self.max_queue, 1)
        check_int("max_cache_tokens", self.max_cache_tokens, 16)
        check_int("prefix_cache_tokens", self.prefix_cache_tokens, 0)
        check_int("prefill_chunk", self.prefill_chunk, 16)
