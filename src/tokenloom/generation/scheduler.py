"""The runtime: requests join and leave a running batch at step boundaries.

    submit(prompt, params) ──▶ queue ──admit──▶ prefill (chunks) ──▶ running ──▶ retired
                                 │                  ▲ prefix cache        │ one decode step
                               handle ◀── StepOutput per token ───────────┘ for all, each step

Any thread may submit; the loop runs in the callers' threads or on a worker
(runner.py says which and why). Each step:
1. drops cancelled requests (a client that went away frees its sequence here);
2. prefills at most `prefill_chunk` prompt tokens: the sequence being prefilled
   continues, then waiting requests are admitted in arrival order while a slot and
   cache memory are free. Each admitted prompt first takes its longest cached prefix
   (prefix_cache.py). So a long prompt delays the running streams by about one
   chunk per step, never by the whole prompt;
3. runs one decode step for every running sequence, each at its own length;
4. retires sequences that stopped (EOS, stop string or id, length, cancel).
A sequence under the semantic repetition guard (semantic.py) may roll back its
current sentence in step 3 and hands out its tokens a sentence late.

Every sampled sequence draws from its own generator (seed + sample index), and the
forward pass treats rows independently, so a seeded request gets the same tokens
whatever runs beside it.

Scoring uses the same loop: `score(ids, keep)` prefills a sequence and returns the
logits of its last `keep` positions (likelihood of continuations, the next-token
distribution), sharing prefixes through the same cache.
"""

from __future__ import annotations

import time
from collections import deque

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.engine import Engine, Request, SamplerGroups, Sequence, StepOutput, row_seed
from tokenloom.generation.handle import _END, RequestHandle
from tokenloom.generation.limits import QueueFull, RuntimeLimits
from tokenloom.generation.prefix_cache import PrefixCache
from tokenloom.generation.runner import LoopRunner
from tokenloom.generation.semantic import ban_first_tokens
from tokenloom.generation.speculative import PromptLookup, Speculator

__all__ = ["QueueFull", "RequestHandle", "RuntimeLimits", "Scheduler"]


class _Job:
    """A submitted request: its sequence and handle; score jobs keep logits instead of decoding."""

    def __init__(self, seq: Sequence, handle: RequestHandle, ids: list[int], need: int, keep: int = 0):
        self.seq, self.handle, self.ids, self.need, self.keep = seq, handle, ids, need, keep
        self.pieces: list[torch.Tensor] = []  # score jobs: logits of the kept positions, chunk by chunk
        self.cached_logits: torch.Tensor | None = None  # a whole prompt from the prefix cache: its last logits


class Scheduler(LoopRunner):
    """Continuous batching over one model; see the module doc for the step."""

    def __init__(self, engine: Engine, limits: RuntimeLimits | None = None, background: bool = False,
                 speculative: PromptLookup | None = None):
        """background: run the loop on a worker thread of its own (a server); otherwise the
        callers run it (runner.py says why), and tests may call `step()` directly.
        speculative: draft by prompt lookup and verify in one pass (speculative.py)."""
        super().__init__(background)
        self.speculator = Speculator(speculative, adaptive=engine.exact_verify) if speculative is not None else None
        self.engine, self.limits = engine, limits or RuntimeLimits()
        self.model, self.config = engine.model, engine.config
        self.pool = self.model.new_kv_pool()
        self.prefix = PrefixCache(self.limits.prefix_cache_tokens)
        self.waiting: deque[_Job] = deque()
        self.running: list[_Job] = []  # running[i] decodes in pool slot i
        self.prefilling: _Job | None = None  # its slot is len(running)
        self.groups: SamplerGroups | None = None
        self._beam_pool = None  # beam searches' KV pool, made on the first one
        self._ids = 0

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

    def beam_search(self, prompt_ids: list[int], params) -> list:
        """The finished hypotheses of a beam search (beam.py), best first. It runs between two
        steps of the loop, on the engine's passes, in a KV pool of its own (one slot per beam)."""
        from tokenloom.generation.beam import BeamSearch

        self._check_prompt(prompt_ids)
        budget = min(params.max_tokens, self.config.max_seq_len - len(prompt_ids))
        need = params.beam_width * (len(prompt_ids) + budget)
        if need > self.limits.max_cache_tokens:
            raise InvalidArgument(
                f"the beam search needs {need} positions of KV cache ({params.beam_width} beams of "
                f"{len(prompt_ids)} prompt + {budget} new tokens); the runtime holds at most "
                f"{self.limits.max_cache_tokens} (max_cache_tokens): lower beam_width or max_tokens")
        if self._beam_pool is None:
            self._beam_pool = self.model.new_kv_pool()
        search = BeamSearch(self.engine, self._beam_pool, prompt_ids, params, budget)
        return self.call(search.run).result()

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
            speculation = self.speculator.stats.to_dict() if self.speculator is not None else {}
            return {"running": len(self.running), "waiting": waiting, **self.prefix.stats(),
                    "cache_bytes": self.pool.nbytes, **speculation}

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.prefilling or self._calls)

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
            self._emit(job, -1, "", None, job.seq.completion(reason))
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
        groups = SamplerGroups([job.seq], last_logits.shape[-1], self.engine.eos_ids, self.engine.tokenizer)
        if self._advance([job], groups, last_logits):
            self.running.append(job)
            self.groups = None

    # -- decode -------------------------------------------------------------------------
    def _decode(self) -> None:
        draft = self.speculator.draft_for(self.running) if self.speculator is not None else []
        if draft:
            self._verify(draft)
            return
        seqs = [job.seq for job in self.running]
        start = time.perf_counter()
        logits = self.engine.decode(self.pool, [s.slot for s in seqs], [s.length for s in seqs],
                                    [s.pending for s in seqs])  # (B, V)
        if self.speculator is not None and len(seqs) == 1:  # a plain step's cost, against a verify pass's
            self.speculator.length.observe_plain(time.perf_counter() - start)
        for seq in seqs:
            seq.length += 1
        if self.groups is None:
            self.groups = SamplerGroups(seqs, logits.shape[-1], self.engine.eos_ids,
                                        self.engine.tokenizer)
        alive = self._advance(list(self.running), self.groups, logits)
        for job in [j for j in self.running if j not in alive]:
            self._retire(job)

    def _verify(self, draft: list[int]) -> None:
        """A speculative step for the one running sequence: up to len(draft) + 1 tokens."""
        job = self.running[0]
        groups = SamplerGroups([job.seq], self.config.vocab_size, self.engine.eos_ids, self.engine.tokenizer)
        self.groups = None  # the decode steps' groups lag behind the tokens chosen here
        if not self.speculator.verify(self.engine, self.pool, job, draft, groups, self._advance):
            self._retire(job)

    def _advance(self, jobs: list[_Job], groups: SamplerGroups, logits: torch.Tensor) -> list[_Job]:
        """Choose each job's next token and emit it; the jobs still running."""
        tokens = groups.sample(ban_first_tokens(logits, [j.seq for j in jobs]))  # (B,)
        groups.record(tokens)
        logprobs = self.engine.logprobs([j.seq for j in jobs], logits, tokens)
        alive = []
        for job, token, logprob in zip(jobs, tokens.tolist(), logprobs):
            seq = job.seq
            text, reason = seq.accept(token)
            seq.pending = token
            if logprob is not None and len(seq.logprobs) < len(seq.ids):  # one per kept token: an
                seq.logprobs.append(logprob)  # ending EOS or stop id is not in token_ids, nor here
            done = seq.completion(reason) if reason else None
            self._emit(job, token, text, logprob, done)
            if done is None:
                alive.append(job)
            else:
                job.handle._put(_END)
        return alive

    def _emit(self, job: _Job, token: int, text: str, logprob, done) -> None:
        """Hand out one token. Under the semantic guard: check the sentences that ended (a
        rollback happens here), then hand out the tokens that became final."""
        seq, guard = job.seq, job.seq.guard
        if guard is None:
            job.handle._put(StepOutput(seq.index, token, text, done, logprob))
            return
        if done is None:
            if guard.accepted(seq):  # rolled back: the penalty history is rebuilt from seq.ids
                self.groups = None
            pieces = guard.release(seq)
        else:
            pieces = guard.finish(seq, token, logprob)
        for i, (token, text, logprob) in enumerate(pieces):
            job.handle._put(StepOutput(seq.index, token, text, done if i == len(pieces) - 1 else None, logprob))

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
