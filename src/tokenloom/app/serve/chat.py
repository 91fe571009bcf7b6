"""POST /v1/chat/completions: messages rendered with the model's chat template, then generation.

Without max_completion_tokens (or its older name max_tokens) a reply may use the
rest of the context, as in OpenAI's API and vLLM.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from starlette.requests import Request

from tokenloom.app.serve.logprobs import chat_logprobs, entries
from tokenloom.app.serve.prompts import (
    chat_logprobs as requested_logprobs, chat_max_tokens, chat_prompt, check_capacity, check_chat_extras,
    check_context, response_format, sampling_params,
)
from tokenloom.app.serve.schemas import (
    AssistantMessage, ChatChoice, ChatChunk, ChatChunkChoice, ChatRequest, ChatResponse, Delta,
)
from tokenloom.app.serve.sequences import (
    DONE, Job, cancel_on_disconnect, event, finish_of, guarded, run_to_end, steps, submit,
)


async def create_chat_completion(state, body: ChatRequest, request: Request):
    arrived = time.perf_counter()
    lm = state.model()
    state.check_model(body.model)
    check_chat_extras(body)
    prompt = chat_prompt(lm, body.messages)
    max_tokens, max_name = chat_max_tokens(body)
    context = lm.config.max_seq_len
    check_context([prompt], max_tokens, context, "messages", max_name)
    renames = {"max_tokens": max_name, "logprobs": "top_logprobs"}
    params = sampling_params(body, lm.tokenizer.vocab_size, renames,
                             max_tokens=max_tokens if max_tokens is not None else context - len(prompt.ids),
                             logprobs=requested_logprobs(body), **response_format(body))
    check_capacity(params.n, state.capacity)
    job = Job(f"chatcmpl-{uuid.uuid4().hex}", state.name, [prompt], params.n, arrived=arrived)
    submit(lm.scheduler, job, params, state.metrics)
    with_logprobs = params.logprobs is not None
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(guarded(_events(request, job, with_logprobs, usage, state.metrics)),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    await run_to_end(request, job, state.metrics)
    return ChatResponse(id=job.id, created=job.created, model=job.model, usage=job.usage(),
                        choices=[_choice(job, i, with_logprobs) for i in range(job.choices)])


def _choice(job: Job, i: int, with_logprobs: bool) -> ChatChoice:
    done = job.done[i]
    finish, reason = finish_of(done)
    logprobs = chat_logprobs(entries(done.logprobs)) if with_logprobs else None
    return ChatChoice(index=i, message=AssistantMessage(content=done.text), logprobs=logprobs,
                      finish_reason=finish, stop_reason=reason)


def _chunk(job: Job, choice: ChatChunkChoice, usage: bool) -> str:
    return event(ChatChunk(id=job.id, created=job.created, model=job.model, choices=[choice]), usage)


async def _events(request: Request, job: Job, with_logprobs: bool, usage: bool, metrics) -> AsyncIterator[str]:
    """The role first, then content deltas, a last delta with finish_reason per choice, usage, [DONE]."""
    for i in range(job.choices):
        yield _chunk(job, ChatChunkChoice(index=i, delta=Delta(role="assistant", content="")), usage)
    async with cancel_on_disconnect(request, job):
        async for i, step in steps(job, metrics):
            scored = with_logprobs and step.logprob is not None
            if not step.text and step.finished is None and not scored:
                continue
            finish, reason = finish_of(step.finished) if step.finished is not None else (None, None)
            logprobs = chat_logprobs(entries([step.logprob])) if scored else None
            delta = Delta(content=step.text) if step.text or step.finished is None else Delta()
            yield _chunk(job, ChatChunkChoice(index=i, delta=delta, logprobs=logprobs, finish_reason=finish,
                                              stop_reason=reason), usage)
    if usage:
        yield event(ChatChunk(id=job.id, created=job.created, model=job.model, choices=[], usage=job.usage()))
    yield DONE
