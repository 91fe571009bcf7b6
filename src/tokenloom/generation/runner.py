"""Who runs the scheduler's loop: the callers themselves, or a worker thread.

Without a worker (the default for the library), whoever waits for a result runs
steps for everyone until its own item arrives, one caller at a time under the step
lock (`drive`). Why: on a CPU, PyTorch's OpenMP threads belong to the thread that
starts a parallel region; once the thread that loaded the model has its own idle
team, a second thread's products run markedly slower than the loading thread's
(measured in docs/performance.md, "Smaller measurements behind choices in the code").

With a worker (`start_background`, what an asyncio server needs: an event loop
cannot run steps), one daemon thread runs the loop, and `call(fn)` runs other
tensor work there between two steps. Workers leave their loop at exit.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections import deque
from concurrent.futures import Future

import torch


def _settle(future: Future, fn) -> None:
    try:
        with torch.inference_mode():
            future.set_result(fn())
    except Exception as error:  # handed to whoever waits on the future
        future.set_exception(error)


_LIVE: "weakref.WeakSet[LoopRunner]" = weakref.WeakSet()


@atexit.register
def _stop_workers() -> None:
    """Let each worker leave its loop before the interpreter tears torch down under it."""
    for scheduler in list(_LIVE):
        scheduler.close(wait=5.0)


class LoopRunner:
    """The threading of a step loop; subclasses give `step()`, `has_work()`,
    `_drop_cancelled()` and `_fail_all(error)`."""

    def __init__(self, background: bool = False):
        self.background = background
        self._step_lock = threading.Lock()
        self._calls: deque = deque()  # (future, fn) to run between two steps
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False

    def close(self, wait: float = 0.0) -> None:
        """Stop the worker after its current step (waiting up to `wait` seconds for it)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if wait and self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=wait)

    def start_background(self) -> None:
        """From now on a worker thread runs the loop (what an asyncio server needs)."""
        with self._cond:
            self.background = True
            self._start()
            self._cond.notify_all()

    def call(self, fn) -> Future:
        """Run fn() where the model's steps run (the worker thread, between two steps), so that a
        server's other tensor work (teacher-forced prompt logprobs) stays on the same CPU
        threads as decoding. Without a worker it runs at once, in the caller's thread."""
        future: Future = Future()
        if not self.background:
            with self._step_lock:
                _settle(future, fn)
            return future
        with self._cond:
            self._calls.append((future, fn))
            self._cond.notify_all()
        return future

    def drive(self, done, cond: threading.Condition) -> None:
        """Run steps in this thread until done(); while another thread runs them, wait on cond."""
        while not done():
            if self._step_lock.acquire(blocking=False):
                try:
                    while not done() and self.has_work() and not self.background:
                        self._guarded_step()
                finally:
                    self._step_lock.release()
                return
            with cond:
                if not done():
                    cond.wait(timeout=0.005)

    def release_cancelled(self) -> None:
        """Free cancelled requests now, when no worker and no other caller is running a step."""
        if not self.background and self._step_lock.acquire(blocking=False):
            try:
                self._drop_cancelled()
            finally:
                self._step_lock.release()

    def _guarded_step(self) -> None:
        try:
            self.step()
        except Exception as error:  # a bug or an exhausted machine: fail the live requests, keep serving
            self._fail_all(error)

    def _start(self) -> None:
        if self.background and (self._worker is None or not self._worker.is_alive()):
            self._worker = threading.Thread(target=self._loop, name="tokenloom-scheduler", daemon=True)
            self._worker.start()
            _LIVE.add(self)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self.has_work() and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            with self._step_lock:
                while self._calls:
                    _settle(*self._calls.popleft())
                if self.waiting or self.running or self.prefilling:
                    self._guarded_step()
