"""The one decode loop: prefill, then one position per step for every sequence of a batch.

    prefill(prompts)            left-padded prompts, one forward pass, fills the KV cache
    loop:
        sample                  processors + selector, rows grouped by their SamplingParams
        stop?                   EOS ids, stop token ids, stop strings, max_tokens, the context
        decode_step(next ids)   one position for the rows still running

Offline `generate`, streaming and chat all consume `Engine.run`, which yields one
`StepOutput` per sequence per step. Rows that finish leave the batch at once (their
cache rows are dropped), so a long sequence never makes the others wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.params import SamplingParams
from tokenloom.generation.sampler import Sampler
from tokenloom.generation.stopping import IncrementalDetokenizer, StopStrings


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


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str  # "eos" | "stop" | "length"
    stop_reason: str | int | None  # the stop string or the stop token id that ended it
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None
    index: int = 0

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "token_ids": self.token_ids,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


@dataclass
class StepOutput:
    index: int  # which request
    token_id: int
    text: str  # newly released text (may be empty while a character or a stop string is pending)
    finished: Completion | None = None


class _Row:
    """One running sequence: its request, generator, detokenizer and stop state."""

    def __init__(self, index: int, request: Request, tokenizer, eos_ids: tuple[int, ...]):
        self.index, self.request, self.params = index, request, request.params
        self.eos_ids = frozenset(eos_ids)
        self.stop_ids = frozenset(request.params.stop_token_ids)
        self.detok = IncrementalDetokenizer(tokenizer, context=request.prompt_ids)
        self.stops = StopStrings(tuple(request.params.stop))
        self.text, self.ids = "", []
        self.logprobs: list[TokenLogprob] | None = [] if request.params.logprobs is not None else None
        self.generator = self._generator()

    def _generator(self) -> torch.Generator | None:
        if self.params.greedy:
            return None
        seed = self.params.seed
        if seed is None:  # still reproducible under torch.manual_seed
            seed = int(torch.randint(0, 2**62, (1,)).item())
        return torch.Generator().manual_seed(seed + self.request.sample_index)

    def accept(self, token: int, budget: int) -> tuple[str, tuple[str, str | int | None] | None]:
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
        if len(self.ids) >= budget:
            return piece + self._release_end(), ("length", None)
        return piece, None

    def _release_end(self) -> str:
        tail = self.stops.feed(self.detok.flush())
        if self.stops.matched is None:
            tail += self.stops.finish()
        self.text += tail
        return tail

    def completion(self, reason: tuple[str, str | int | None]) -> Completion:
        return Completion(
            text=self.text, token_ids=list(self.ids), finish_reason=reason[0], stop_reason=reason[1],
            prompt_tokens=len(self.request.prompt_ids), completion_tokens=len(self.ids),
            logprobs=self.logprobs, index=self.index,
        )


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, P) with prompts right-aligned, and pad (B,) the number of pad slots of each row."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
    pad = torch.tensor([width - len(p) for p in prompts], dtype=torch.long)
    return ids, pad


def attention_mask(pad: torch.Tensor, start: int, length: int) -> torch.Tensor | None:
    """(B, 1, T, S) bool: query t (slot start+t) may see slot s if s <= start+t and s is not padding.

    None when no row is padded (the model then uses plain causal attention). A padding
    query also sees itself, so that no softmax row is empty.
    """
    if not bool(pad.any()):
        return None
    slots = torch.arange(start + length)  # (S,)
    queries = torch.arange(start, start + length)  # (T,)
    causal = slots[None, :] <= queries[:, None]  # (T, S)
    real = slots[None, :] >= pad[:, None]  # (B, S)
    mask = causal[None] & real[:, None, :]  # (B, T, S)
    mask |= slots[None, None, :] == queries[None, :, None]
    return mask.unsqueeze(1)


class Engine:
    """Runs batches of requests through one model: prefill, then decode steps."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.config = model.config
        self.eos_ids = tuple(tokenizer.eos_ids)
        self.step = model  # what runs one decode step: the model, or a compiled version of it

    def compile(self) -> None:
        """Run decode steps through `torch.compile` (inductor): no per-operation dispatch.

        The first decode step compiles the whole model (about a minute on 2 CPU cores;
        inductor caches the result on disk, so a later process takes seconds); prefill
        stays eager. So that one compiled graph serves every request, the KV cache is
        then always allocated at the model's full context, and the sizes of module
        buffers (the cache's batch and length) are traced as dynamic.
        """
        torch._dynamo.config.force_nn_module_property_static_shapes = False
        # The weights never change under inference, so the compiled step need not check the
        # model's hundreds of tensors before each call (about 1 ms a step otherwise).
        options = {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}
        self.step = torch.compile(self.model, dynamic=True, options=options)

    @property
    def compiled(self) -> bool:
        return self.step is not self.model

    # -- the forward passes --------------------------------------------------
    def prefill(self, prompts: list[list[int]], cache_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill a fresh cache with left-padded prompts; logits (B, V) of each last position."""
        ids, pad = left_pad(prompts, self.tokenizer.pad_id)
        self.model.setup_cache(len(prompts), self.config.max_seq_len if self.compiled else cache_len)
        positions = (torch.arange(ids.shape[1])[None, :] - pad[:, None]).clamp(min=0)  # (B, P)
        mask = attention_mask(pad, 0, ids.shape[1])
        logits = self.model(ids, start=0, positions=positions, mask=mask, last_only=True)  # (B, 1, V)
        return logits[:, -1, :].float(), pad

    def decode_step(self, tokens: torch.Tensor, slot: int, pad: torch.Tensor) -> torch.Tensor:
        """One new position for every row: tokens (B,) at cache slot `slot`; logits (B, V)."""
        positions = (slot - pad)[:, None]  # (B, 1)
        mask = attention_mask(pad, slot, 1)
        logits = self.step(tokens[:, None], start=slot, positions=positions, mask=mask)  # (B, 1, V)
        return logits[:, -1, :].float()

    # -- the loop --------------------------------------------------------------
    def check(self, requests: list[Request]) -> None:
        limit = self.config.max_seq_len
        for i, request in enumerate(requests):
            if not request.prompt_ids:
                raise InvalidArgument(f"prompt {i} is empty: give at least one token of text")
            if len(request.prompt_ids) >= limit:
                raise InvalidArgument(
                    f"prompt {i} has {len(request.prompt_ids)} tokens; the model's context is {limit}, "
                    f"so a prompt may have at most {limit - 1}"
                )

    def run(self, requests: list[Request]) -> Iterator[StepOutput]:
        """Generate for every request; yields each new token of each row as it is chosen."""
        self.check(requests)
        try:
            with torch.inference_mode():
                yield from self._run(requests)
        finally:
            self.model.clear_cache()

    def _run(self, requests: list[Request]) -> Iterator[StepOutput]:
        unique: dict[tuple[int, ...], int] = {}
        for r in requests:
            unique.setdefault(tuple(r.prompt_ids), len(unique))
        prompts = [list(p) for p in unique]
        width = max(len(p) for p in prompts)
        budgets = [min(r.params.max_tokens, self.config.max_seq_len - width) for r in requests]
        logits, pad = self.prefill(prompts, width + max(budgets))
        expand = torch.tensor([unique[tuple(r.prompt_ids)] for r in requests])
        if len(prompts) != len(requests) or expand.ne(torch.arange(len(requests))).any():
            self._keep(expand)
            logits, pad = logits[expand], pad[expand]
        rows = [_Row(i, r, self.tokenizer, self.eos_ids) for i, r in enumerate(requests)]
        history = TokenHistory([r.prompt_ids for r in requests], logits.shape[-1])
        samplers = _SamplerGroups(rows, logits.shape[-1], self.eos_ids)
        slot = width
        while rows:
            tokens = samplers.sample(history, logits, rows)  # (B,)
            history.append(tokens)
            if any(r.logprobs is not None for r in rows):
                self._record_logprobs(rows, logits, tokens)
            keep = []
            for i, (row, token) in enumerate(zip(rows, tokens.tolist())):
                text, reason = row.accept(token, budgets[row.index])
                done = row.completion(reason) if reason else None
                yield StepOutput(row.index, token, text, done)
                if done is None:
                    keep.append(i)
            if len(keep) < len(rows):
                if not keep:
                    return
                index = torch.tensor(keep)
                rows, tokens, pad = [rows[i] for i in keep], tokens[index], pad[index]
                history = history.rows(keep)
                samplers = _SamplerGroups(rows, logits.shape[-1], self.eos_ids)
                self._keep(index)
            logits = self.decode_step(tokens, slot, pad)
            slot += 1

    def _keep(self, index: torch.Tensor) -> None:
        for block in self.model.blocks:
            block.attn.cache.reorder(index)

    def _record_logprobs(self, rows: list[_Row], logits: torch.Tensor, tokens: torch.Tensor) -> None:
        logp = torch.log_softmax(logits, dim=-1)  # (B, V)
        for i, row in enumerate(rows):
            if row.logprobs is None:
                continue
            token = int(tokens[i])
            top = []
            if row.params.logprobs:
                values, ids = logp[i].topk(row.params.logprobs)
                top = [(self.tokenizer.token_text(j), j, v) for v, j in zip(values.tolist(), ids.tolist())]
            row.logprobs.append(TokenLogprob(self.tokenizer.token_text(token), token, float(logp[i, token]), top))


class _SamplerGroups:
    """Rows that share a SamplingParams object share one sampler and one batched pass."""

    def __init__(self, rows: list[_Row], vocab_size: int, eos_ids: tuple[int, ...]):
        groups: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(id(row.params), []).append(i)
        self.groups = [
            (index, Sampler(rows[index[0]].params, vocab_size, eos_token_ids=eos_ids)) for index in groups.values()
        ]
        self.whole = len(self.groups) == 1

    def sample(self, history: TokenHistory, logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        if self.whole:
            _, sampler = self.groups[0]
            return sampler(history, logits, [r.generator for r in rows])
        tokens = torch.empty(len(rows), dtype=torch.long)
        for index, sampler in self.groups:
            part = torch.tensor(index)
            generators = [rows[i].generator for i in index]
            tokens[part] = sampler(history.rows(index), logits[part], generators)
        return tokens
