"""What a caller holds for one submitted request: a stream of StepOutputs it can cancel.

The scheduler puts items in; the caller's thread (or its asyncio loop) takes them
out. Without a worker thread, a caller waiting for its next item runs the
scheduler's steps itself, for every request, while no other caller does.
`aiter()` (for a scheduler with a worker) wakes an event loop through
call_soon_threadsafe, so a server streams many requests without a thread per request.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from tokenloom.generation.engine import Completion, StepOutput

_END = object()


class RequestHandle:
    """What submit returns: iterate it for StepOutputs (or `aiter()`), cancel it, or wait for the result."""

    def __init__(self, request_id: int, prompt_tokens: int, scheduler=None):
        self.id, self.prompt_tokens = request_id, prompt_tokens
        self._scheduler = scheduler  # runs steps for a waiting caller when it has no worker thread
        self.cached_tokens = 0
        self.cancelled = False
        self._items: deque = deque()
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._final: Completion | None = None

    def _put(self, item) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()
            loop, event = self._loop, self._event
        if loop is not None:
            loop.call_soon_threadsafe(event.set)

    def _next(self):
        """The next item if one is there (None otherwise); raises the worker's error."""
        if not self._items:
            return None
        item = self._items.popleft()
        if isinstance(item, BaseException):
            raise item
        return item

    def __iter__(self):
        while True:
            self._wait()
            with self._cond:
                item = self._next()
            if item is _END:
                return
            yield self._seen(item)

    def _wait(self) -> None:
        """Until an item is there: run the scheduler's steps ourselves, or wait for its worker."""
        scheduler = self._scheduler
        if scheduler is not None and not scheduler.background:
            scheduler.drive(lambda: bool(self._items), self._cond)
        with self._cond:
            while not self._items:
                self._cond.wait()

    async def aiter(self):
        """The StepOutputs for asyncio code: awaits without a thread per request. An event loop
        cannot run steps itself, so the scheduler gets its worker thread if it has none."""
        if self._scheduler is not None and not self._scheduler.background:
            self._scheduler.start_background()
        with self._cond:
            self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
        while True:
            with self._cond:
                item = self._next()
                if item is None:
                    self._event.clear()
            if item is None:
                await self._event.wait()
                continue
            if item is _END:
                return
            yield self._seen(item)

    def _seen(self, step: StepOutput) -> StepOutput:
        if step.finished is not None:
            self._final = step.finished
        return step

    def cancel(self) -> None:
        """Stop this request; its sequence is freed at the next step boundary (at once when
        no step is running and the scheduler has no worker)."""
        self.cancelled = True
        if self._scheduler is not None:
            self._scheduler.release_cancelled()

    def result(self) -> Completion:
        """Wait for the end; the Completion (finish_reason "cancelled" if it was cancelled)."""
        for _ in self:
            pass
        return self._final
