"""Beam search: the `beam_width` most likely continuations, kept in step, scored by length.

    prompt ──prefill (one slot)──▶ logits ──▶ loop:
        log P of every (beam, token) pair = beam's sum of log-probabilities + log_softmax(logits)
        the best K = (1 + #EOS ids) · beam_width pairs, best first; a pair "finishes" when its
        token is an EOS id or it reaches max_tokens
        finished pairs among the first beam_width enter the finished list (kept to beam_width)
        the best beam_width unfinished pairs are the next beams; their keys and values are
        the parent's slot (the first child takes it over, the others get a copy)
        one decode step for every beam (one batched pass over slots [0, beam_width))

A finished hypothesis y of n generated tokens (its EOS included) is ranked by

    score(y) = Σ_t log P(y_t | x, y_<t) / n ** length_penalty

so length_penalty > 0 favours longer outputs and 0 ranks by plain log-probability. The
search stops when every beam has hit max_tokens, or when the finished list is full and
cannot improve (early_stopping):
- False: the best running beam, normalised by its current length, is no better than the
  worst finished hypothesis (a heuristic: a later, longer hypothesis might still win);
- True: as soon as beam_width hypotheses are finished;
- "never": as False, but with length_penalty > 0 the best running beam is normalised by
  max_tokens, the most it could grow to, so the stop is never premature.
These are the rules of transformers' `generate(num_beams=..., do_sample=False)` (its
`_beam_search`: candidates, finishing, the three stopping rules and float32 arithmetic),
so the two agree token for token on the same logits (tests/generation/test_beam.py).

The runtime runs a search between two steps of its loop (`Scheduler.beam_search`), on the
same engine passes as every other request: `Engine.prefill` for the prompt, `Engine.decode`
for the beams, in a KV pool of its own whose slots [0, beam_width) are the beams.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.options import check_float, check_int

EARLY_STOPPING = (False, True, "never")


@dataclass(frozen=True)
class BeamParams:
    """What a beam search is asked for; each field is checked here, with its allowed values."""

    beam_width: int = 4
    max_tokens: int = 16
    length_penalty: float = 1.0
    early_stopping: bool | str = False

    def __post_init__(self):
        check_int("beam_width", self.beam_width, 1, 256)
        check_int("max_tokens", self.max_tokens, 1)
        object.__setattr__(self, "length_penalty", check_float("length_penalty", self.length_penalty))
        if not any(self.early_stopping is choice for choice in (False, True)) and self.early_stopping != "never":
            raise InvalidArgument(f"early_stopping must be False, True or 'never', got {self.early_stopping!r}")


@dataclass
class BeamCompletion:
    """One finished hypothesis: its tokens (EOS left out, as in Completion), score and log-probability."""

    text: str
    token_ids: list[int]
    score: float  # logprob / n ** length_penalty, n = generated tokens with the EOS
    logprob: float  # Σ log P of the generated tokens, the EOS included
    finish_reason: str  # "eos" | "length"
    prompt_tokens: int
    index: int = 0  # rank, 0 = best

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    def to_dict(self) -> dict:
        return {"text": self.text, "token_ids": self.token_ids, "score": self.score, "logprob": self.logprob,
                "finish_reason": self.finish_reason, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens}


@dataclass
class _Finished:
    score: torch.Tensor  # () float32, as the ranking compares it
    logprob: float
    tokens: list[int]
    eos: bool


def _assign_slots(parents: list[int], old_slots: list[int], width: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Slots for the new beams (beam j descends from old beam parents[j]) and the copies (src, dst).

    The first child of a beam takes over its parent's slot; every further child gets a slot
    no child took (a parent without children, or one never used) and a copy of its parent's.
    parents=[0, 0, 2], old_slots=[0, 1, 2] -> slots [0, 1, 2], copies [(0, 1)].
    """
    slots: list[int | None] = [None] * len(parents)
    taken: set[int] = set()
    for j, parent in enumerate(parents):
        if old_slots[parent] not in taken:
            slots[j] = old_slots[parent]
            taken.add(old_slots[parent])
    free = iter(s for s in range(width) if s not in taken)
    copies = []
    for j, parent in enumerate(parents):
        if slots[j] is None:
            slots[j] = next(free)
            copies.append((old_slots[parent], slots[j]))
    return slots, copies


class BeamSearch:
    """One search over one prompt; `run()` returns the finished hypotheses, best first."""

    def __init__(self, engine, pool, prompt_ids: list[int], params: BeamParams, budget: int):
        self.engine, self.pool, self.params = engine, pool, params
        self.prompt = list(prompt_ids)
        self.budget = budget  # tokens a hypothesis may have (max_tokens, within the context)
        self.eos = torch.tensor(sorted(set(engine.eos_ids)), dtype=torch.long)
        self.width = params.beam_width
        self.candidates = max(2, 1 + len(self.eos)) * self.width  # enough that width of them go on
        self.finished: list[_Finished] = []
        self.improvable = True  # until the early-stopping rule says the finished list is final

    def run(self) -> list[BeamCompletion]:
        pool, width = self.pool, self.width
        pool.reserve(width, len(self.prompt) + self.budget)
        logits = self.engine.prefill(pool, 0, self.prompt, 0)  # (1, V)
        scores = torch.zeros(1)  # (R,) float32: each running beam's Σ log P
        beams: list[list[int]] = [[]]  # running beams' tokens, best first
        slots = [0]
        generated = 0
        while True:
            logp = torch.log_softmax(logits.float(), dim=-1) + scores[:, None]  # (R, V)
            vocab = logp.shape[-1]
            top, index = logp.view(-1).topk(min(self.candidates, logp.numel()))  # (K,) best first
            parents, tokens = (index // vocab).tolist(), index % vocab
            ends = torch.isin(tokens, self.eos)  # (K,)
            hits = ends | (generated + 1 >= self.budget)
            tokens = tokens.tolist()
            self._finish(top, parents, tokens, ends, hits, beams, generated + 1)
            generated += 1
            go_on = [i for i in range(len(tokens)) if not hits[i]][:width]
            if not go_on:
                break
            scores = top[go_on]
            if self._should_stop(scores[0], generated):
                break
            beams = [beams[parents[i]] + [tokens[i]] for i in go_on]
            logits, slots = self._decode([parents[i] for i in go_on], [tokens[i] for i in go_on], slots, generated)
        return self._completions()

    def _finish(self, top, parents, tokens, ends, hits, beams, length: int) -> None:
        """Hypotheses among the first `width` candidates that end here join the finished list."""
        normed = top / (length ** self.params.length_penalty)  # (K,) float32, as the ranking compares them
        new = [_Finished(normed[i], float(top[i]), beams[parents[i]] + [tokens[i]], bool(ends[i]))
               for i in range(min(self.width, len(tokens))) if hits[i]]
        if not new:
            return
        # Stable sort: among equal scores the earlier hypothesis stays ahead.
        merged = sorted(self.finished + new, key=lambda f: -float(f.score))
        self.finished = merged[: self.width]

    def _should_stop(self, best_running: torch.Tensor, generated: int) -> bool:
        """The early-stopping rules of the module doc, after `generated` tokens."""
        p = self.params
        full = len(self.finished) == self.width
        length = self.budget if p.early_stopping == "never" and p.length_penalty > 0 else generated
        if full:
            best = best_running / (length ** p.length_penalty)
            worst = min(float(f.score) for f in self.finished)
            self.improvable = self.improvable and bool(best > worst)
        return not self.improvable or (p.early_stopping is True and full)

    def _decode(self, parents: list[int], tokens: list[int], old_slots: list[int], generated: int):
        """Logits (R, V) of the new beams, in their rank order, after one decode step, and their slots."""
        length = len(self.prompt) + generated - 1  # positions in each beam's cache before this token
        slots, copies = _assign_slots(parents, old_slots, self.width)
        for src, dst in copies:
            self.pool.move(src, dst, length)
        order = sorted(range(len(slots)), key=slots.__getitem__)  # rows by slot: [0, width) is a plain view
        logits = self.engine.decode(self.pool, [slots[j] for j in order], [length] * len(order),
                                    [tokens[j] for j in order])  # (R, V), rows in slot order
        row_of_beam = torch.empty(len(order), dtype=torch.long)
        row_of_beam[torch.tensor(order)] = torch.arange(len(order))
        return logits[row_of_beam], slots  # (R, V), rows in rank order

    def _completions(self) -> list[BeamCompletion]:
        out = []
        for rank, f in enumerate(self.finished):
            ids = f.tokens[:-1] if f.eos else f.tokens
            out.append(BeamCompletion(self.engine.tokenizer.decode(ids), ids, float(f.score), f.logprob,
                                      "eos" if f.eos else "length", len(self.prompt), rank))
        return out
