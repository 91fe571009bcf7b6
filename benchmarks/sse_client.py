"""A streaming client for OpenAI-style completion endpoints, timing each chunk.

One request is one `Result`: when it was sent, when each piece of text arrived, how
many tokens the server says it generated (`usage.completion_tokens` from the final
chunk, asked for with `stream_options: {"include_usage": true}`) or, when it says
nothing, how many text chunks came. The stream is Server-Sent Events, lines
`data: {...}` ending with `data: [DONE]`; anything else (a non-200 status, an
`error` object, a stream that ends without `[DONE]`) makes the request failed.

Only loopback addresses are used by the benchmarks; `client()` ignores proxy
settings from the environment so that a request to 127.0.0.1 never leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Result:
    """One streamed request; times in seconds from `time.perf_counter()`."""

    sent: float = 0.0
    arrivals: list[float] = field(default_factory=list)  # one per chunk carrying text
    usage_tokens: int | None = None  # completion_tokens, when the server reports it
    prompt_tokens: int | None = None
    done: bool = False  # [DONE] seen
    error: str | None = None
    cut: bool = False  # still running when the level's time limit came

    @property
    def ok(self) -> bool:
        return self.done and self.error is None and not self.cut

    @property
    def ttft(self) -> float | None:
        return self.arrivals[0] - self.sent if self.arrivals else None

    @property
    def gaps(self) -> list[float]:
        """Inter-token latencies: time between successive text chunks."""
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:])]

    @property
    def tokens(self) -> int:
        if self.ok and self.usage_tokens is not None:
            return self.usage_tokens
        return len(self.arrivals)


def client(concurrency: int, timeout: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout), trust_env=False)


def chunk_text(event: dict) -> str:
    """The text a chunk carries: `choices[0].text` (completions) or `.delta.content` (chat)."""
    choices = event.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    if "text" in choice:
        return choice["text"] or ""
    return (choice.get("delta") or {}).get("content") or ""


def _take_event(result: Result, event: dict, now: float) -> None:
    if "error" in event:
        result.error = json.dumps(event["error"])[:200]
        return
    if chunk_text(event):
        result.arrivals.append(now)
    usage = event.get("usage")
    if usage:
        result.usage_tokens = usage.get("completion_tokens", result.usage_tokens)
        result.prompt_tokens = usage.get("prompt_tokens", result.prompt_tokens)


async def stream(http: httpx.AsyncClient, url: str, body: dict, result: Result) -> Result:
    """POST `body` to `url` with streaming; fill `result` as the chunks come."""
    result.sent = time.perf_counter()
    try:
        async with http.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                result.error = f"HTTP {response.status_code}: {text[:200]}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, ": ping" comments, "event:" lines
                data = line[5:].strip()
                if data == "[DONE]":
                    result.done = True
                    break
                _take_event(result, json.loads(data), time.perf_counter())
        if not result.done and result.error is None:
            result.error = "the stream ended without [DONE]"
    except asyncio.CancelledError:
        result.cut = True
        raise
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    return result


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks: percentile([1, 2, 3, 4], 0.5) -> 2.5."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
