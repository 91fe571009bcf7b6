"""One request's sequences on the runtime: submit them, follow their steps, free them.

A request with P prompts and n samples each becomes P × n handles; handle i * n + j
is prompt i, sample j (seed + j), and is choice i * n + j of the response, as in
OpenAI's API. Steps of all handles are merged into one asyncio stream. Whatever
ends the request early (the client disconnecting, an error, the server stopping)
cancels every handle that has not finished, so its sequence leaves the batch at the
next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic import BaseModel
from starlette.requests import Request

from tokenloom.app.serve.errors import APIError, bad_request, error_body
from tokenloom.app.serve.metrics import ServeMetrics
from tokenloom.app.serve.prompts import Prompt
from tokenloom.app.serve.schemas import PromptTokensDetails, Usage
from tokenloom.errors import InvalidArgument
from tokenloom.generation.scheduler import QueueFull

log = logging.getLogger("tokenloom.serve")


@dataclass
class Job:
    """What every response of one request is built from."""

    id: str
    model: str
    prompts: list[Prompt]
    n: int
    handles: list = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))
    arrived: float = field(default_factory=time.perf_counter)
    done: dict = field(default_factory=dict)  # choice index -> Completion

    @property
    def choices(self) -> int:
        return len(self.prompts) * self.n

    def prompt_of(self, choice: int) -> Prompt:
        return self.prompts[choice // self.n]

    def usage(self) -> Usage:
        prompt = sum(len(p.ids) for p in self.prompts)
        generated = sum(c.completion_tokens for c in self.done.values())
        firsts = self.handles[:: self.n]  # the first sample of each prompt: the others share its prefix
        cached = sum(handle.cached_tokens for handle in firsts)
        return Usage(prompt_tokens=prompt, completion_tokens=generated, total_tokens=prompt + generated,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=cached))


def submit(scheduler, job: Job, params, metrics: ServeMetrics) -> None:
    """Submit every sequence of `job`; all or none (429 when the runtime's queue is full).

    One at a time, so that each handle submitted before a refusal is known and cancelled.
    """
    try:
        for prompt in job.prompts:
            for j in range(job.n):
                job.handles.append(scheduler.submit(prompt.ids, params, sample_index=j))
    except QueueFull as error:
        cancel(job.handles)
        raise APIError(429, f"the server is busy: {error}; retry later", code="queue_full",
                       headers={"Retry-After": "1"}) from None
    except InvalidArgument as error:  # a prompt or a budget the runtime cannot hold
        cancel(job.handles)
        raise bad_request(str(error), "max_tokens" if "max_tokens" in str(error) else "prompt") from None
    metrics.prompt_tokens.inc(sum(len(p.ids) for p in job.prompts))


def cancel(handles) -> None:
    for handle in handles:
        handle.cancel()


async def _follow(handle, arrived: float, metrics: ServeMetrics) -> AsyncIterator:
    """The handle's steps, timed: time to first token, then the gap before each next token."""
    last, count, finished = None, 0, None
    try:
        async for step in handle.aiter():
            now = time.perf_counter()
            if last is None:
                metrics.time_to_first_token.observe(now - arrived)
            else:
                metrics.inter_token_latency.observe(now - last)
            last, count = now, count + 1
            finished = step.finished or finished
            yield step
    finally:
        metrics.generation_tokens.inc(finished.completion_tokens if finished is not None else count)


async def steps(job: Job, metrics: ServeMetrics) -> AsyncIterator[tuple[int, object]]:
    """(choice index, StepOutput) from every handle of `job` as they come; cancels the rest on exit."""
    queue: asyncio.Queue = asyncio.Queue()
    END = object()

    async def pump(choice: int, handle) -> None:
        try:
            async for step in _follow(handle, job.arrived, metrics):
                await queue.put((choice, step))
        except Exception as error:  # handed to the consumer, which raises it
            await queue.put((choice, error))
        await queue.put((choice, END))

    tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(job.handles)]
    live = len(tasks)
    try:
        while live:
            choice, item = await queue.get()
            if item is END:
                live -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                if item.finished is not None:
                    job.done[choice] = item.finished
                yield choice, item
    finally:
        cancel(h for i, h in enumerate(job.handles) if i not in job.done)
        for task in tasks:
            task.cancel()


@contextlib.asynccontextmanager
async def cancel_on_disconnect(request: Request, job: Job):
    """While the body runs, a client that goes away cancels the job's unfinished sequences."""

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        cancel(h for i, h in enumerate(job.handles) if i not in job.done)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()


async def run_to_end(request: Request, job: Job, metrics: ServeMetrics) -> None:
    """Every sequence to its end (job.done filled); 503 if one was cancelled from elsewhere."""
    async with cancel_on_disconnect(request, job):
        async for _ in steps(job, metrics):
            pass
    missing = [i for i in range(len(job.handles)) if i not in job.done or job.done[i].finish_reason == "cancelled"]
    if missing:
        raise APIError(503, f"sequence(s) {missing} were cancelled before they finished; retry the request")


# -- finish reasons and server-sent events ----------------------------------------------
def finish_of(completion) -> tuple[str, str | int | None]:
    """OpenAI's finish_reason and vLLM's stop_reason: EOS and stops are "stop", the budget "length"."""
    if completion is None or completion.finish_reason == "length":
        return "length", None
    if completion.finish_reason == "stop":
        return "stop", completion.stop_reason
    return "stop", None


def event(chunk: BaseModel | dict, include_usage: bool = True) -> str:
    """One server-sent event: `data: {...}` and a blank line. Deltas leave out their null fields."""
    data = chunk.model_dump(mode="json") if isinstance(chunk, BaseModel) else chunk
    for choice in data.get("choices", ()):
        if isinstance(choice.get("delta"), dict):
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
    if not include_usage:
        data.pop("usage", None)
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


DONE = "data: [DONE]\n\n"


async def guarded(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """A stream that ends with an error event instead of a cut connection when the runtime fails."""
    try:
        async for text in events:
            yield text
    except APIError as error:
        yield event(error.body())
        yield DONE
    except Exception as error:
        log.exception("stream failed")
        yield event(error_body(f"internal error: {type(error).__name__}: {error}", "server_error"))
        yield DONE
