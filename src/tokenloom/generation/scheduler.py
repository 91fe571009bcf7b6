"""The runtime: requests join and leave a running batch at step boundaries.

    submit(prompt, params) ──▶ queue ──admit──▶ prefill (chunks) ──▶ running ──▶ retired
                                 │                  ▲ prefix cache        │ one decode step
                               handle ◀── StepOutput per token ───────────┘ for all, each step

One worker thread owns the model's KV pool and runs the loop; any thread may
submit. Each step:
1. drops cancelled requests (a client that went away frees its sequence here);
2. prefills at most `prefill_chunk` prompt tokens: the sequence being prefilled
   continues, then waiting requests are admitted in arrival order while a slot and
   cache memory are free. Each admitted prompt first takes its longest cached prefix
   (prefix_cache.py). So a long prompt delays the running streams by about one
   chunk per step, never by the whole prompt;
3. runs one decode step for every running sequence, each at its own length;
4. retires sequences that stopped (EOS, stop string or id, length, cancel).

Every sampled sequence draws from its own generator (seed + sample index), and the
forward pass treats rows independently, so a seeded request gets the same tokens
whatever runs beside it.

Scoring uses the same loop: `score(ids, keep)` prefills a sequence and returns the
logits of its last `keep` positions (likelihood of continuations, the next-token
distribution), sharing prefixes through the same cache.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from concurrent.futures import Future
from collections import deque
from dataclasses import dataclass

import torch

from tokenloom.errors import InvalidArgument, TokenloomError
from tokenloom.generation.engine import Engine, Request, SamplerGroups, Sequence, StepOutput, row_seed
from tokenloom.generation.handle import _END, RequestHandle
from tokenloom.generation.params import check_int
from tokenloom.generation.prefix_cache import PrefixCache


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


class _Job:
    """A submitted request: its sequence and handle; score jobs keep logits instead of decoding."""

    def __init__(self, seq: Sequence, handle: RequestHandle, ids: list[int], need: int, keep: int = 0):
        self.seq, self.handle, self.ids, self.need, self.keep = seq, handle, ids, need, keep
        self.pieces: list[torch.Tensor] = []  # score jobs: logits of the kept positions, chunk by chunk
        self.cached_logits: torch.Tensor | None = None  # a whole prompt from the prefix cache: its last logits


def _settle(future: Future, fn) -> None:
    try:
        with torch.inference_mode():
            future.set_result(fn())
    except Exception as error:  # handed to whoever waits on the future
        future.set_exception(error)


_LIVE: "weakref.WeakSet[Scheduler]" = weakref.WeakSet()


@atexit.register
def _stop_workers() -> None:
    """Let each worker leave its loop before the interpreter tears torch down under it."""
    for scheduler in list(_LIVE):
        scheduler.close(wait=5.0)


class Scheduler:
    """Continuous batching over one model; see the module doc for the step."""

    def __init__(self, engine: Engine, limits: RuntimeLimits | None = None, background: bool = False):
        """background: run the loop on a worker thread of its own (a server). Otherwise the
        callers run it: whoever waits for a result runs steps for everyone until its own
        item arrives, one caller at a time (`drive`), and tests may call `step()` directly.

        Why callers by default: on a CPU, PyTorch's OpenMP threads belong to the thread
        that starts a parallel region. Once the thread that loaded the model has its own
        idle team, a second thread's products run at about half speed on 2 cores
        (README, "The runtime"), so the library computes in the caller's thread."""
        self.engine, self.limits, self.background = engine, limits or RuntimeLimits(), background
        self._step_lock = threading.Lock()
        self._calls: deque = deque()  # (future, fn) to run between two steps
        self.model, self.config = engine.model, engine.config
        self.pool = self.model.new_kv_pool()
        self.prefix = PrefixCache(self.limits.prefix_cache_tokens)
        self.waiting: deque[_Job] = deque()
        self.running: list[_Job] = []  # running[i] decodes in pool slot i
        self.prefilling: _Job | None = None  # its slot is len(running)
        self.groups: SamplerGroups | None = None
        self._cond = threading.Condition()
        self._ids = 0
        self._worker: threading.Thread | None = None
        self._closed = False

    # -- submission (any thread) ------------------------------------------------
    def submit(self, prompt_ids: list[int], params, sample_index: int = 0, block: bool = False) -> RequestHandle:
        """Queue one generation; its handle streams StepOutputs. block: wait for queue room
        instead of raising QueueFull."""
        return self.submit_many([Request(list(prompt_ids), params, sample_index)], block)[0]

    def submit_many(self, requests: list[Request], block: bool = False) -> list[RequestHandle]:
        """Queue every request, all or none (QueueFull); block: wait for room instead, one by one."""
        jobs = [self._job(r) for r in requests]
        with self._cond:
            if not block and len(self.waiting) + len(jobs) > self.limits.max_queue:
                raise QueueFull(f"the queue holds {len(self.waiting)} waiting requests and {len(jobs)} more do not "
                                f"fit (max_queue={self.limits.max_queue}); try again later")
        self._enqueue(jobs)
        return [job.handle for job in jobs]

    def _enqueue(self, jobs: list["_Job"]) -> None:
        """Append jobs to the queue, making room by running steps (or waiting for the worker)."""
        for job in jobs:
            while True:
                with self._cond:
                    if len(self.waiting) < self.limits.max_queue:
                        self.waiting.append(job)
                        self._cond.notify_all()
                        break
                    if self.background:
                        self._cond.wait(timeout=0.05)
                        continue
                with self._step_lock:  # no worker: make room ourselves
                    self._guarded_step()
        with self._cond:
            self._start()

    def score(self, ids: list[int], keep: int = 1) -> torch.Tensor:
        """Logits (keep, V) of the last `keep` positions of ids, through the runtime's prefill."""
        return self.score_many([(ids, keep)])[0]

    def score_many(self, jobs: list[tuple[list[int], int]]) -> list[torch.Tensor]:
        """`score` for many (ids, keep) at once: queued together, so shared prefixes are computed once."""
        from tokenloom.generation.params import SamplingParams

        greedy, queued = SamplingParams(temperature=0), []
        for ids, keep in jobs:
            self._check_prompt(ids)
            if not 1 <= keep <= len(ids):
                raise InvalidArgument(f"keep must be in [1, {len(ids)}] for {len(ids)} ids, got {keep}")
            seq = Sequence(Request(list(ids), greedy), self.engine.tokenizer, (), 0, None)
            queued.append(_Job(seq, self._handle(len(ids)), list(ids), len(ids), keep))
        self._enqueue(queued)
        out = []
        for job in queued:
            for _ in job.handle:
                pass
            out.append(torch.cat(job.pieces)[-job.keep:])
        return out

    def _handle(self, prompt_tokens: int) -> RequestHandle:
        with self._cond:
            self._ids += 1
            return RequestHandle(self._ids, prompt_tokens, self)

    def _check_prompt(self, ids: list[int]) -> None:
        limit = self.config.max_seq_len
        if not ids:
            raise InvalidArgument("the prompt is empty: give at least one token of text")
        if len(ids) >= limit:
            raise InvalidArgument(f"the prompt has {len(ids)} tokens; the model's context is {limit}, "
                                  f"so a prompt may have at most {limit - 1}")

    def _job(self, request: Request) -> _Job:
        ids = request.prompt_ids
        self._check_prompt(ids)
        budget = min(request.params.max_tokens, self.config.max_seq_len - len(ids))
        need = len(ids) + budget
        if need > self.limits.max_cache_tokens:
            raise InvalidArgument(
                f"the request needs {need} positions of KV cache ({len(ids)} prompt + {budget} new tokens); "
                f"the runtime holds at most {self.limits.max_cache_tokens} (max_cache_tokens): lower max_tokens")
        seq = Sequence(request, self.engine.tokenizer, self.engine.eos_ids, budget, row_seed(request.params))
        return _Job(seq, self._handle(len(ids)), list(ids), need)

    def stats(self) -> dict:
        with self._cond:
            waiting = len(self.waiting) + (self.prefilling is not None)
            return {"running": len(self.running), "waiting": waiting, **self.prefix.stats(),
                    "cache_bytes": self.pool.nbytes}

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

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.prefilling or self._calls)

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

    # -- the loop (worker thread) -------------------------------------------------
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

    @torch.inference_mode()
    def step(self) -> None:
        """One step boundary: cancellations, prefill of up to one chunk, one decode step, retirement."""
        self._drop_cancelled()
        self._prefill_chunk()
        if self.running:
            self._decode()

    def _fail_all(self, error: Exception) -> None:
        with self._cond:
            jobs = [*self.running, *([self.prefilling] if self.prefilling else [])]
            self.running, self.prefilling, self.groups = [], None, None
        for job in jobs:
            job.handle._put(error)

    def _drop_cancelled(self) -> None:
        with self._cond:
            for job in [j for j in self.waiting if j.handle.cancelled]:
                self.waiting.remove(job)
                self._emit_end(job, ("cancelled", None))
            self._cond.notify_all()
        if self.prefilling is not None and self.prefilling.handle.cancelled:
            job, self.prefilling = self.prefilling, None
            self._emit_end(job, ("cancelled", None))
        for job in [j for j in self.running if j.handle.cancelled]:
            self._emit_end(job, ("cancelled", None))
            self._retire(job)

    def _emit_end(self, job: _Job, reason) -> None:
        if not job.keep:
            job.handle._put(StepOutput(job.seq.index, -1, "", job.seq.completion(reason)))
        job.handle._put(_END)

    # -- prefill ------------------------------------------------------------------------
    def _prefill_chunk(self) -> None:
        """Prompt chunks until this step's budget is spent (the first chunk always runs).

        A sequence's chunks are [start, start + prefill_chunk) from where its cache ends,
        whatever else is prefilled in the same step, so its numbers never depend on its
        neighbours."""
        budget = self.limits.prefill_chunk
        while True:
            job = self.prefilling or self._admit()
            if job is None:
                return
            self.prefilling = job
            seq, start = job.seq, job.seq.length
            n = min(self.limits.prefill_chunk, len(job.ids) - start)
            if n > budget and budget < self.limits.prefill_chunk:
                return  # the next step begins with it
            if n == 0:  # the whole prompt came from the prefix cache, with its last logits
                self.prefilling = None
                self._prefilled(job, job.cached_logits)
                continue
            keep = 1 if not job.keep else max(1, min(n, start + n - (len(job.ids) - job.keep)))
            logits = self.engine.prefill(self.pool, seq.slot, job.ids[start : start + n], start, keep)
            seq.length += n
            budget -= n
            if job.keep and start + n > len(job.ids) - job.keep:
                job.pieces.append(logits)
            if seq.length < len(job.ids):
                return
            self.prefilling = None
            self._prefilled(job, logits[-1:])

    def _admit(self) -> _Job | None:
        """The next waiting job, given a slot and its cached prefix, if a slot and memory are free."""
        with self._cond:
            if not self.waiting or len(self.running) >= self.limits.max_running:
                return None
            job = self.waiting[0]
            longest = max([j.need for j in self.running] + [job.need])
            slots = len(self.running) + 1
            if self.running and self.pool.planned_tokens(slots, longest) > self.limits.max_cache_tokens:
                return None  # waits for memory to free up
            self.waiting.popleft()
            self._cond.notify_all()
        self.pool.reserve(slots, longest, self.limits.max_cache_tokens)
        job.seq.slot = len(self.running)
        cached, keys, values, job.cached_logits = self._cached_prefix(job)
        if cached:
            self.pool.write_prefix(job.seq.slot, keys, values)
        job.seq.length = job.seq.cached_tokens = job.handle.cached_tokens = cached
        return job

    def _cached_prefix(self, job: _Job):
        """(positions, keys, values, last logits or None) the prefix cache gives this job.

        A generation whose whole prompt was seen before takes every position and the
        last logits (n > 1 samples, a repeated request): bit for bit what computing it
        again would give. Otherwise the longest block-aligned prefix, leaving every
        position whose logits a score job wants to be computed."""
        if not self.prefix.max_tokens:
            return 0, None, None, None
        if not job.keep:
            whole = self.prefix.exact(job.ids)
            if whole is not None:
                return len(job.ids), *whole
        cached, keys, values = self.prefix.lookup(job.ids, len(job.ids) - max(job.keep, 1))
        return cached, keys, values, None

    def _prefilled(self, job: _Job, last_logits: torch.Tensor) -> None:
        """A prompt is in the cache: remember its prefix; a score job ends, a generation samples its first token."""
        if self.prefix.max_tokens and not job.keep and job.cached_logits is None:
            keys, values = self.pool.read_prefix(job.seq.slot, len(job.ids))
            self.prefix.store(job.ids, keys, values, last_logits)
        elif self.prefix.max_tokens and self.prefix.wants(job.ids):
            keys, values = self.pool.read_prefix(job.seq.slot, (len(job.ids) // 16) * 16)
            self.prefix.store(job.ids, keys, values)
        if job.keep:
            job.handle._put(_END)
            return
        groups = SamplerGroups([job.seq], last_logits.shape[-1], self.engine.eos_ids)
        if self._advance([job], groups, last_logits):
            self.running.append(job)
            self.groups = None

    # -- decode -------------------------------------------------------------------------
    def _decode(self) -> None:
        seqs = [job.seq for job in self.running]
        logits = self.engine.decode(self.pool, [s.slot for s in seqs], [s.length for s in seqs],
                                    [s.pending for s in seqs])  # (B, V)
        for seq in seqs:
            seq.length += 1
        if self.groups is None:
            self.groups = SamplerGroups(seqs, logits.shape[-1], self.engine.eos_ids)
        alive = self._advance(list(self.running), self.groups, logits)
        for job in [j for j in self.running if j not in alive]:
            self._retire(job)

    def _advance(self, jobs: list[_Job], groups: SamplerGroups, logits: torch.Tensor) -> list[_Job]:
        """Choose each job's next token and emit it; the jobs still running."""
        tokens = groups.sample(logits)  # (B,)
        groups.record(tokens)
        logprobs = self.engine.logprobs([j.seq for j in jobs], logits, tokens)
        alive = []
        for job, token, logprob in zip(jobs, tokens.tolist(), logprobs):
            seq = job.seq
            text, reason = seq.accept(token)
            seq.pending = token
            if logprob is not None:
                seq.logprobs.append(logprob)
            done = seq.completion(reason) if reason else None
            job.handle._put(StepOutput(seq.index, token, text, done, logprob))
            if done is None:
                alive.append(job)
            else:
                job.handle._put(_END)
        return alive

    def _retire(self, job: _Job) -> None:
        """Free a running job's slot; the last running sequence (and the one prefilling) move down."""
        i = self.running.index(job)
        last = self.running.pop()
        if last is not job:
            self.pool.move(last.seq.slot, i, last.seq.length)
            last.seq.slot = i
            self.running[i] = last
        if self.prefilling is not None:
            self.pool.move(self.prefilling.seq.slot, len(self.running), self.prefilling.seq.length)
            self.prefilling.seq.slot = len(self.running)
        self.groups = None
        with self._cond:
            self._cond.notify_all()
