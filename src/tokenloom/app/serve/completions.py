"""POST /v1/completions: prompts in, text out, whole or streamed.

With `echo` the prompt comes first in each choice's text (and, with `logprobs`, its
own tokens' log probabilities, the first one null); `max_tokens: 0` with `echo`
scores the prompt and generates nothing, which is how evaluation harnesses use it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from starlette.requests import Request

from tokenloom.app.serve.logprobs import Entry, completion_logprobs, entries, prompt_entries, text_length
from tokenloom.app.serve.prompts import (
    check_capacity, check_completion_extras, check_context, completion_max_tokens, completion_prompts,
    sampling_params,
)
from tokenloom.app.serve.schemas import CompletionChoice, CompletionRequest, CompletionResponse
from tokenloom.app.serve.sequences import (
    DONE, Job, cancel_on_disconnect, event, finish_of, guarded, run_to_end, steps, submit,
)


class _Echo:
    """The prompts' text and, when asked, their tokens' log probabilities, per prompt."""

    def __init__(self, job: Job, items: list[list[Entry]] | None):
        self.job, self.items = job, items

    @classmethod
    async def build(cls, lm, job: Job, echo: bool, top: int | None) -> "_Echo | None":
        if not echo:
            return None
        items = None
        if top is not None:  # teacher forcing runs where decoding runs, off the event loop
            items = [await asyncio.wrap_future(lm.scheduler.call(lambda ids=p.ids: prompt_entries(lm, ids, top)))
                     for p in job.prompts]
        return cls(job, items)

    def text(self, choice: int) -> str:
        return self.job.prompt_of(choice).text

    def entries(self, choice: int) -> list[Entry]:
        return self.items[choice // self.job.n] if self.items is not None else []


async def create_completion(state, body: CompletionRequest, request: Request):
    arrived = time.perf_counter()
    lm = state.model()
    state.check_model(body.model)
    check_completion_extras(body)
    prompts = completion_prompts(lm, body.prompt)
    max_tokens = completion_max_tokens(body)
    check_context(prompts, max_tokens, lm.config.max_seq_len, "prompt", "max_tokens")
    score_only = max_tokens == 0
    params = sampling_params(body, lm.tokenizer.vocab_size, max_tokens=1 if score_only else max_tokens,
                             logprobs=body.logprobs)
    check_capacity(len(prompts) * params.n, state.capacity)
    job = Job(f"cmpl-{uuid.uuid4().hex}", state.name, prompts, params.n, arrived=arrived)
    echo = await _Echo.build(lm, job, bool(body.echo), params.logprobs)
    if not score_only:
        submit(lm.scheduler, job, params, state.metrics)
    with_logprobs = params.logprobs is not None
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(guarded(_events(request, job, echo, with_logprobs, usage, state.metrics)),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    if not score_only:
        await run_to_end(request, job, state.metrics)
    choices = [_choice(job, echo, i, with_logprobs) for i in range(job.choices)]
    return CompletionResponse(id=job.id, created=job.created, model=job.model, choices=choices, usage=job.usage())


def _choice(job: Job, echo: _Echo | None, i: int, with_logprobs: bool) -> CompletionChoice:
    done = job.done.get(i)
    head = echo.text(i) if echo else ""
    items = (echo.entries(i) if echo else []) + (entries(done.logprobs) if done else [])
    finish, reason = finish_of(done)
    return CompletionChoice(
        index=i, text=head + (done.text if done else ""), finish_reason=finish, stop_reason=reason,
        logprobs=completion_logprobs(items) if with_logprobs else None,
    )


def _chunk(job: Job, choice: CompletionChoice, usage: bool) -> str:
    return event(CompletionResponse(id=job.id, created=job.created, model=job.model, choices=[choice]), usage)


async def _events(request: Request, job: Job, echo: _Echo | None, with_logprobs: bool, usage: bool,
                  metrics) -> AsyncIterator[str]:
    """Echo first, then one chunk per released piece of text; usage last when asked; then [DONE]."""
    offsets = [0] * job.choices
    if echo:
        for i in range(job.choices):
            items = echo.entries(i)
            logprobs = completion_logprobs(items) if with_logprobs else None
            offsets[i] = text_length(items)
            finish = "length" if not job.handles else None
            choice = CompletionChoice(index=i, text=echo.text(i), logprobs=logprobs, finish_reason=finish)
            yield _chunk(job, choice, usage)
    async with cancel_on_disconnect(request, job):
        async for i, step in steps(job, metrics):
            chunk = _step_chunk(job, i, step, offsets, with_logprobs, usage)
            if chunk is not None:
                yield chunk
    if usage:
        yield event(CompletionResponse(id=job.id, created=job.created, model=job.model, choices=[],
                                       usage=job.usage()))
    yield DONE


def _step_chunk(job: Job, i: int, step, offsets: list[int], with_logprobs: bool, usage: bool) -> str | None:
    """The chunk of one step; None for a step that released nothing (a pending character or stop)."""
    scored = with_logprobs and step.logprob is not None
    if not step.text and step.finished is None and not scored:
        return None
    finish, reason = finish_of(step.finished) if step.finished is not None else (None, None)
    logprobs = None
    if scored:
        items = entries([step.logprob])
        logprobs = completion_logprobs(items, offsets[i])
        offsets[i] += text_length(items)
    choice = CompletionChoice(index=i, text=step.text, logprobs=logprobs, finish_reason=finish, stop_reason=reason)
    return _chunk(job, choice, usage)
