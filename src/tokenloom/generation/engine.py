"""One sequence's life, and the forward passes the scheduler runs for it.

    prefill(chunk)              prompt positions [a, b) of one sequence into its cache slot
    sample                      processors + selector, rows grouped by equal chain fields (chain_key)
    stop?                       EOS ids, stop token ids, stop strings, max_tokens, the context
    decode(next ids)            one position for every running sequence, each at its own length

`Sequence` holds what a request needs while it runs: its seeded generator, its
detokenizer and stop strings, its history for the penalties. `Engine` owns the
model's forward passes; the scheduler (scheduler.py) decides which run when.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from tokenloom import private_apis as private
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.params import SamplingParams, chain_fields
from tokenloom.generation.sampler import Sampler
from tokenloom.generation.semantic import SemanticGuard
from tokenloom.generation.stopping import IncrementalDetokenizer, StopStrings
from tokenloom.generation.constraints import KINDS as CONSTRAINT_FIELDS, constraint_of
from tokenloom.generation.structured import constraint_done, row_state


@dataclass
class Request:
    prompt_ids: list[int]
    params: SamplingParams
    sample_index: int = 0  # which of the params.n samples of this prompt


@dataclass
class TokenLogprob:
    """log P of the chosen token under the model's raw distribution, with the top alternatives."""

    token: str
    id: int
    logprob: float
    top: list[tuple[str, int, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """{'token', 'id', 'logprob', 'top': [{'token', 'id', 'logprob'}, ...]}, as `generate --json` prints it."""
        return {"token": self.token, "id": self.id, "logprob": self.logprob,
                "top": [{"token": s, "id": j, "logprob": v} for s, j, v in self.top]}


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str  # "eos" | "stop" | "length" | "cancelled"
    stop_reason: str | int | None  # the stop string or the stop token id that ended it
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None
    index: int = 0
    cached_tokens: int = 0  # prompt tokens whose keys and values came from the prefix cache
    # Sentences the semantic guard rolled back. Not in to_dict: the CLI's JSON pins its keys.
    semantic_rollbacks: int = 0

    def to_dict(self) -> dict:
        """The JSON of `generate --json`: every key always present; `stop_reason` is None unless a
        stop string or stop token ended it, `logprobs` None unless the request asked for them."""
        return {
            "text": self.text,
            "token_ids": self.token_ids,
            "finish_reason": self.finish_reason,
            "stop_reason": self.stop_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "logprobs": None if self.logprobs is None else [t.to_dict() for t in self.logprobs],
        }


@dataclass
class StepOutput:
    index: int  # which sample of its request (Request.sample_index)
    token_id: int
    text: str  # newly released text (may be empty while a character or a stop string is pending)
    finished: Completion | None = None
    logprob: TokenLogprob | None = None  # when the request asked for logprobs


class SequenceMark(NamedTuple):
    """A sequence's state between two tokens: len(text), the detokenizer's and the stop strings' states."""

    text: int
    detok: tuple
    stops: tuple


def row_seed(params: SamplingParams) -> int | None:
    """The seed a sampled sequence's generator starts from: its own, or one drawn from torch's
    global generator (so runs stay reproducible under torch.manual_seed). None when greedy."""
    if params.greedy:
        return None
    if params.seed is not None:
        return params.seed
    return int(torch.randint(0, 2**62, (1,)).item())


class Sequence:
    """One running sequence: its request, generator, detokenizer, stop state and cache slot."""

    def __init__(self, request: Request, tokenizer, eos_ids: tuple[int, ...], budget: int, seed: int | None):
        self.request, self.params = request, request.params
        self.index = request.sample_index
        self.prompt = list(request.prompt_ids)
        self.budget = budget  # tokens it may generate
        self.eos_ids = frozenset(eos_ids)
        self.stop_ids = frozenset(request.params.stop_token_ids)
        self.detok = IncrementalDetokenizer(tokenizer, context=request.prompt_ids)
        self.stops = StopStrings(tuple(request.params.stop))
        self.text, self.ids = "", []
        self.logprobs: list[TokenLogprob] | None = [] if request.params.logprobs is not None else None
        self.generator = None if seed is None else torch.Generator().manual_seed(seed + self.index)
        self.slot = -1  # its row of the KV pool while it runs
        self.length = 0  # positions in its cache
        self.cached_tokens = 0
        self.pending: int | None = None  # the last chosen token, not yet in the cache
        # State of stateful steps (mirostat's μ), carried by the sequence from batch to batch.
        # A semantic-guard rollback rewinds the tokens, not this state.
        self.sampler_state: dict = row_state(self.params)  # a structured-output constraint starts it
        self.guard = SemanticGuard.for_params(self.params, self.mark())  # None unless asked for

    def accept(self, token: int) -> tuple[str, tuple[str, str | int | None] | None]:
        """Take one token; return released text and (finish_reason, stop_reason) once finished."""
        if token in self.eos_ids and not self.params.ignore_eos:
            return self._release_end(), ("eos", token)
        if token in self.stop_ids:
            return self._release_end(), ("stop", token)
        self.ids.append(token)
        piece = self.stops.feed(self.detok.push(token))
        self.text += piece
        if self.stops.matched is not None:
            return piece, ("stop", self.stops.matched)
        if constraint_done(self.sampler_state):  # structured output complete, nothing more allowed
            return piece + self._release_end(), ("eos", None)
        if len(self.ids) >= self.budget:
            return piece + self._release_end(), ("length", None)
        return piece, None

    def mark(self) -> SequenceMark:
        return SequenceMark(len(self.text), self.detok.state(), self.stops.state())

    def rewind(self, k: int, mark: SequenceMark) -> None:
        """Back to the state before ids[k] (`mark`, taken then): the next decode step feeds
        token k - 1 again at its position, so its logits for position k come out afresh."""
        del self.ids[k:]
        self.text = self.text[: mark.text]
        self.detok.rewind(mark.detok)
        self.stops.rewind(mark.stops)
        if self.logprobs is not None:
            del self.logprobs[k:]
        self.length = len(self.prompt) + k - 1
        self.pending = (self.prompt + self.ids)[self.length]

    def _release_end(self) -> str:
        tail = self.stops.feed(self.detok.flush())
        if self.stops.matched is None:
            tail += self.stops.finish()
        self.text += tail
        return tail

    def completion(self, reason: tuple[str, str | int | None]) -> Completion:
        return Completion(
            text=self.text, token_ids=list(self.ids), finish_reason=reason[0], stop_reason=reason[1],
            prompt_tokens=len(self.prompt), completion_tokens=len(self.ids),
            logprobs=self.logprobs, index=self.index, cached_tokens=self.cached_tokens,
            semantic_rollbacks=self.guard.rollbacks if self.guard is not None else 0,
        )


class CompiledStep:
    """A compiled model called under tokenloom's dynamo settings: tracing, a recompilation and
    every call see them, and no other code in the process does."""

    def __init__(self, compiled):
        self.compiled = compiled

    def __call__(self, *args, **kwargs):
        with private.dynamo_settings():
            return self.compiled(*args, **kwargs)


class Engine:
    """The model's forward passes over a KV pool: prompt chunks and decode steps."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.config = model.config
        self.eos_ids = tuple(tokenizer.eos_ids)
        self.step = model  # what runs one decode step: the model, or a compiled version of it

    def compile(self) -> None:
        """Run decode steps through `torch.compile` (inductor): no per-operation dispatch.

        The first decode step compiles the whole model (inductor caches the result on
        disk, so a later process takes seconds); prefill stays eager. The KV pool's
        sizes and every row's length are traced as dynamic, so one graph serves
        every batch. The dynamo settings this needs (private_apis.DYNAMO_SETTINGS) hold only
        while tokenloom's compiled step runs: the process's own torch configuration is untouched.
        """
        # The weights never change under inference, so the compiled step need not check the
        # model's hundreds of tensors before each call.
        self.step = CompiledStep(torch.compile(self.model, dynamic=True, options=private.compile_options()))

    @property
    def compiled(self) -> bool:
        return self.step is not self.model

    def prefill(self, pool, slot: int, ids: list[int], start: int, keep: int = 1) -> torch.Tensor:
        """Positions [start, start + len(ids)) of the sequence in `slot`; logits (keep, V) of the last `keep`."""
        view = pool.prefill_view(slot, start, len(ids))
        tokens = torch.tensor([ids], dtype=torch.long, device=pool.device)  # (1, T)
        logits = self.model(tokens, cache=view, keep=keep)  # (1, keep, V)
        return logits[0].float().cpu()  # the sampler works on the CPU whatever the model's device

    @property
    def exact_verify(self) -> bool:
        """Whether `verify` computes exactly what decode steps would (the fused native step)."""
        return getattr(self.model, "fused_decoder", None) is not None and not self.compiled

    def verify(self, pool, slot: int, ids: list[int], start: int) -> torch.Tensor:
        """Logits (len(ids), V) for ids at positions [start, start + len(ids)) of `slot` (speculation).

        On a model with the fused decode step (native GGUF weights, eager) the positions go in
        as rows of one decode step in the same slot: each row writes its keys before any row
        attends, and attends up to its own position, so the rows are a causal chunk whose
        numbers are exactly those of decoding the positions one by one. Elsewhere, a prefill pass.
        """
        if self.exact_verify:
            return self.decode(pool, [slot] * len(ids), list(range(start, start + len(ids))), ids)
        return self.prefill(pool, slot, ids, start, keep=len(ids))

    def decode(self, pool, slots: list[int], lengths: list[int], tokens: list[int]) -> torch.Tensor:
        """One new position for each row: tokens[i] at position lengths[i] of slots[i]; logits (B, V)."""
        view = pool.decode_view(slots, lengths, always_indexed=self.compiled)
        ids = torch.tensor(tokens, dtype=torch.long, device=pool.device)[:, None]  # (B, 1)
        logits = self.step(ids, cache=view, last_only=True)  # (B, 1, V)
        return logits[:, -1, :].float().cpu()

    def logprobs(self, sequences: list[Sequence], logits: torch.Tensor, tokens: torch.Tensor) -> list:
        """TokenLogprob per row (None where the row did not ask), from the raw distribution."""
        if all(s.logprobs is None for s in sequences):
            return [None] * len(sequences)
        logp = torch.log_softmax(logits, dim=-1)  # (B, V)
        out = []
        for i, seq in enumerate(sequences):
            if seq.logprobs is None:
                out.append(None)
                continue
            token, top = int(tokens[i]), []
            if seq.params.logprobs:
                values, ids = logp[i].topk(seq.params.logprobs)
                top = [(self.tokenizer.token_text(j), j, v) for v, j in zip(values.tolist(), ids.tolist())]
            out.append(TokenLogprob(self.tokenizer.token_text(token), token, float(logp[i, token]), top))
        return out


# The SamplingParams fields that build the processor chain (sampler.BUILDERS) or the end ids
# it protects, from their declarations; the others (seed, max_tokens, n, stop strings,
# logprobs) act per sequence.
# A structured-output constraint travels in each sequence's own state (structured.row_state),
# so the key holds only whether there is one: rows with different schemas share one pass.
CHAIN_FIELDS = tuple(name for name in chain_fields() if name not in CONSTRAINT_FIELDS)


def chain_key(params: SamplingParams) -> tuple:
    """Equal for params whose processor chains are equal: such rows share one batched pass."""
    values = [constraint_of(params) is not None]
    for name in CHAIN_FIELDS:
        value = getattr(params, name)
        values.append(tuple(sorted(value.items())) if isinstance(value, dict) else value)
    return tuple(values)


class SamplerGroups:
    """Sequences whose params build the same chain share one sampler and one batched pass.

    Rows are grouped by value (`chain_key`), not by which SamplingParams object they hold.
    That is safe because a Sampler holds no per-row state: each row keeps its own
    generator, its own history (penalties, DRY, min_tokens) and its own state dict
    (mirostat's μ, a structured-output constraint), all passed in at every step."""

    def __init__(self, sequences: list[Sequence], vocab_size: int, eos_ids: tuple[int, ...], tokenizer=None):
        self.sequences = sequences
        groups: dict[tuple, list[int]] = {}
        for i, seq in enumerate(sequences):
            groups.setdefault(chain_key(seq.params), []).append(i)
        self.groups = [
            (index, Sampler(sequences[index[0]].params, vocab_size, eos_token_ids=eos_ids, tokenizer=tokenizer))
            for index in groups.values()
        ]
        self.history = TokenHistory([s.prompt for s in sequences], vocab_size)
        self.history.states = [seq.sampler_state for seq in sequences]
        for row, seq in enumerate(sequences):
            self.history.output_ids[row] = list(seq.ids)
            if seq.ids:
                self.history.output_counts[row] += torch.bincount(
                    torch.tensor(seq.ids), minlength=vocab_size).to(torch.int32)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, V) logits → (B,) next ids; each row draws from its own generator."""
        rows = self.sequences
        if len(self.groups) == 1:
            _, sampler = self.groups[0]
            return sampler(self.history, logits, [s.generator for s in rows])
        tokens = torch.empty(len(rows), dtype=torch.long)
        for index, sampler in self.groups:
            part = torch.tensor(index)
            generators = [rows[i].generator for i in index]
            tokens[part] = sampler(self.history.rows(index), logits[part], generators)
        return tokens

    def record(self, tokens: torch.Tensor) -> None:
        self.history.append(tokens)
