"""Speculative decoding without a draft model: prompt lookup, verified in one forward pass.

    ids so far ──draft: the tokens that followed the latest earlier occurrence of the last n ids──▶ d_1..d_k
    [pending, d_1..d_k] ──one pass over the slot, from its length (Engine.verify)──▶ logits (k + 1, V)
    position j: choose a token from logits[j] with the request's own sampler chain
        equal to d_{j+1}: accepted, go on to position j + 1
        otherwise: that token is the step's last (a correction); the cache length is set back
        to just before it, so the keys and values the rejected drafts left behind are
        overwritten by the next step and never read (views read [0, length) only)
    all k accepted: logits[k] gives one more token, so a step yields 1 to k + 1 tokens

Why the output is what plain decoding gives. Each emitted token is chosen from the same
chain on the same history as in plain decoding, one choice per emitted token, in order.
Greedy: the argmax at every position, so the tokens are plain greedy decoding's whenever
the verify pass's logits have the same argmax as a decode step's.
Sampling: the standard rule (Leviathan et al. 2023; Chen et al. 2023) accepts a draft d
drawn from q with probability min(1, p(d) / q(d)) and otherwise draws from
norm(max(0, p - q)). A lookup draft is a point mass, q = δ_d: accept with probability
p(d); on rejection draw from p with d removed, renormalised. Drawing y ~ p and accepting
when y = d realises exactly that: P(accept) = p(d), and P(y | rejected) = p(y) / (1 - p(d))
for y ≠ d. So the emitted tokens have the distribution of plain sampling, and, with one
draw per emitted token from the row's seeded generator, they are the same draws.

When it runs: with one sequence running (batch 1, where a decode step reads every weight
for one token and a pass over k + 1 positions costs little more). With several running,
the batched decode step already shares the weights' reads between them, and a verify pass
per sequence would cost more than it saves, so the step is a plain decode step. Sequences
under the semantic guard (which rolls back sentences) decode plainly too.
Precision: in float32 the verify pass (a prefill chunk) and a decode step compute the same
logits up to rounding (tests: token for token equal to greedy). In native precision the
verify pass is one fused decode step whose rows are the k + 1 positions of the same slot,
each computed exactly as decoding it alone would: the same logits, bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.options import check_int

METHODS = ("ngram",)


@dataclass(frozen=True)
class PromptLookup:
    """Draft `draft_tokens` ids by n-gram lookup in the prompt and the output so far.

    The last n ids (n from max_ngram down to min_ngram, the longest that occurs earlier)
    are looked up; the ids that followed their latest earlier occurrence are the draft.
    ids=[5, 6, 7, 8, 5, 6], draft_tokens=2 -> the 2-gram [5, 6] occurred at 0 -> [7, 8].
    """

    draft_tokens: int = 5
    max_ngram: int = 3
    min_ngram: int = 1

    def __post_init__(self):
        check_int("draft_tokens", self.draft_tokens, 1, 64)
        check_int("max_ngram", self.max_ngram, 1, 64)
        check_int("min_ngram", self.min_ngram, 1, self.max_ngram, note=" (at most max_ngram)")

    def draft(self, ids: list[int], limit: int | None = None) -> list[int]:
        """Up to min(draft_tokens, limit) ids to try after `ids`; [] when no n-gram recurs."""
        k = self.draft_tokens if limit is None else min(self.draft_tokens, limit)
        if k < 1:
            return []
        sequence = torch.tensor(ids, dtype=torch.long)  # (L,)
        for n in range(min(self.max_ngram, len(ids) - 1), self.min_ngram - 1, -1):
            # Every n-gram that a later id follows, the suffix itself excluded: (L - n, n).
            windows = sequence[:-1].unfold(0, n, 1)
            hits = (windows == sequence[-n:]).all(dim=1).nonzero()
            if len(hits):
                start = int(hits[-1]) + n
                return ids[start : start + k]
        return []


def speculative_config(method, draft_tokens: int | None = None) -> PromptLookup | None:
    """The drafter `tl.load(speculative=..., draft_tokens=...)` asks for: None, "ngram" or a PromptLookup."""
    if method is None:
        if draft_tokens is not None:
            raise InvalidArgument("draft_tokens needs speculative='ngram'")
        return None
    if isinstance(method, PromptLookup):
        return method if draft_tokens is None else PromptLookup(draft_tokens, method.max_ngram, method.min_ngram)
    if method not in METHODS:
        raise InvalidArgument(f"speculative must be one of {', '.join(METHODS)} (or None), got {method!r}")
    return PromptLookup() if draft_tokens is None else PromptLookup(draft_tokens)


@dataclass
class SpeculationStats:
    """What speculation did: verify passes, drafted ids, accepted ids, tokens emitted by them."""

    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    emitted: int = 0

    @property
    def tokens_per_step(self) -> float:
        """Tokens a verify pass yields on average (accepted drafts + the token it chooses itself)."""
        return self.emitted / self.steps if self.steps else 0.0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def to_dict(self) -> dict:
        return {"speculative_steps": self.steps, "drafted": self.drafted, "accepted": self.accepted,
                "tokens_per_step": self.tokens_per_step}


class DraftLength:
    """How many of a draft's ids to verify, from what passes have cost and how often drafts held.

    A verify pass over r positions costs t_r; a plain decode step t_1. With each drafted id
    accepted with probability a (given the ones before it were), k drafts yield
    E(k) = 1 + a + ... + a^k tokens a pass, so the pass pays when E(k) / (t_{k+1} / t_1) > 1.
    Where one row is bound by memory, t_r is nearly flat and every draft is worth verifying;
    where several rows are compute-bound (native weights on a few cores), t_r grows about
    linearly and low acceptance makes any draft a loss: then k = 0 (a plain step), with a
    one-id probe every PROBE_EVERY skipped drafts to keep a and t current. t_r is fitted as
    t_1 + slope·(r − 1) from exponential moving averages of the measured times.
    """

    PROBE_EVERY = 16
    ALPHA = 0.2  # weight of a new measurement in the moving averages

    def __init__(self):
        self.plain: float | None = None  # t_1, seconds
        self.slope: float | None = None  # seconds per extra row of a verify pass
        self.accept, self.skipped = 0.5, 0

    def _mean(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.ALPHA * (new - old)

    def observe_plain(self, seconds: float) -> None:
        self.plain = self._mean(self.plain, seconds)

    def observe_verify(self, rows: int, seconds: float, drafted: int, accepted: int) -> None:
        if self.plain is not None and rows > 1:
            self.slope = self._mean(self.slope, max(seconds - self.plain, 0.0) / (rows - 1))
        tested = accepted + (accepted < drafted)  # the positions whose draft was put to the test
        if tested:
            self.accept = self._mean(self.accept, accepted / tested)

    def choose(self, available: int) -> int:
        """Drafted ids to verify, 0 to 'available'."""
        if self.plain is None or self.slope is None:
            return available  # nothing measured yet: verify it all, and learn
        best, best_rate = 0, 1.0
        for k in range(1, available + 1):
            tokens = sum(self.accept**i for i in range(k + 1))
            rate = tokens / (1 + self.slope * k / self.plain)
            if rate > best_rate:
                best, best_rate = k, rate
        if best == 0:
            self.skipped += 1
            if self.skipped < self.PROBE_EVERY:
                return 0
            best = 1
        self.skipped = 0
        return best


@dataclass
class Speculator:
    """The scheduler's part: which running sequence gets a draft, and its verify step.

    adaptive: choose each draft's length from measured costs (`DraftLength`). The scheduler sets
    it only where a verify pass computes exactly what decode steps do (the fused native step),
    so that a choice made from wall-clock times can never change the output."""

    lookup: PromptLookup
    stats: SpeculationStats = field(default_factory=SpeculationStats)
    adaptive: bool = False
    length: DraftLength = field(default_factory=DraftLength)

    def draft_for(self, running: list) -> list[int]:
        """A draft for the only running sequence, [] when none (see the module doc for when)."""
        if len(running) != 1:
            return []
        seq = running[0].seq
        if seq.guard is not None or seq.pending is None:
            return []
        # Emitting k + 1 tokens must stay within the budget, which also keeps the verify pass's
        # positions inside the slot the pool reserved for the request.
        room = seq.budget - len(seq.ids) - 1
        draft = self.lookup.draft(seq.prompt + seq.ids, room)
        if draft and self.adaptive:
            draft = draft[: self.length.choose(len(draft))]
        return draft

    def verify(self, engine, pool, job, draft: list[int], groups, advance) -> bool:
        """One verify pass for `job`; advance(jobs, groups, logits) chooses and emits one token.
        True while the sequence runs on."""
        seq = job.seq
        ids = [seq.pending, *draft]
        start = time.perf_counter()
        logits = engine.verify(pool, seq.slot, ids, seq.length)  # (k + 1, V)
        seconds = time.perf_counter() - start
        self.stats.steps += 1
        self.stats.drafted += len(draft)
        accepted, alive = 0, True
        for j in range(len(ids)):
            alive = advance([job], groups, logits[j : j + 1])
            seq.length += 1  # ids[j] is in the cache for good
            self.stats.emitted += 1
            if not alive or j == len(draft) or seq.pending != draft[j]:
                break  # ended, or the chosen token is not the draft's: it is the next pending token
            accepted += 1
        self.stats.accepted += accepted
        self.length.observe_verify(len(ids), seconds, len(draft), accepted)
        return alive
