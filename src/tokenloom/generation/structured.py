"""Structured output: a mask that lets through only the tokens a constraint allows.

    SamplingParams(json_schema={...})    an instance of a JSON schema
    SamplingParams(json_object=True)     any JSON object
    SamplingParams(regex=r"\\d{3}-\\d{4}") a string the regular expression matches in full
    SamplingParams(choice=["yes", "no"]) exactly one of the strings
    SamplingParams(grammar=...)          a GBNF (llama.cpp) or Lark grammar

Each step, before any other processor of the chain, every constrained row asks its
matcher which tokens may come next and every other token's score becomes -inf; the
chosen token then advances that row's matcher (`accept`, as llama.cpp's stateful
samplers do). Penalties, temperature and the filters that follow work on the allowed
tokens only, so every sampler and every chain order keeps the constraint. The
matcher lives in the sequence's own state dict (TokenHistory.states), so it follows
its sequence from batch to batch; rows without a constraint sit in other sampler
groups and pay nothing. An end id (EOS, stop_token_ids) is allowed only once the
constraint is complete, and a sequence whose constraint is complete and allows
nothing more ends there (`constraint_done`, read by Sequence.accept), with
finish_reason "eos", without spending a step on the end token.

Library: llguidance (guidance-ai; the structured-output backend of llama.cpp, vLLM and
SGLang), chosen against xgrammar and outlines-core by benchmarks/structured_libraries.py
(figures in docs/performance.md, "Structured output", with the CPU). All three compute a
mask in far less than a decode step; what decided is coverage and weight. llguidance alone
takes all five kinds natively (JSON schema, regex, choice, Lark, GBNF) and compiles a
schema lazily; xgrammar has no Lark and its wheel requires torch and triton; outlines-core
knows JSON schema and regex only and builds a whole automaton per schema first, which
grows with the schema. llguidance is one wheel with no dependencies, the optional extra
`tokenloom[structured]`.

The tokenizer llguidance needs is built from our own tokenizer's byte strings (the
byte-level BPE of the GGUF): each token's bytes, control tokens marked with a leading
0xFF as llguidance expects, and our encoder for the rare re-tokenization it does.
JSON is generated compactly (`, ` and `: ` separators, no other whitespace): a free
whitespace lets a small model pad with newlines until max_tokens runs out.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.constraints import (
    STATE_KEY, Constraint, compile_grammar, constraint_of, llguidance_module,
)
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.processors import NEG_INF, LogitsProcessor
from tokenloom.model import blocks

# -- the tokenizer llguidance needs ------------------------------------------------------
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet reversed: the character a byte is written as -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    chars = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(shifted)}
    return {c: b for b, c in chars.items()}


def token_bytes(tokenizer) -> tuple[list[bytes], list[int]]:
    """(bytes of every token id, the control token ids) from our byte-level BPE tokenizer.

    "Ġcat" -> b" cat"; an added token ("<|im_end|>") is its own UTF-8 text.
    """
    backend = tokenizer.backend
    added = backend.get_added_tokens_decoder()
    decode = _byte_decoder()
    out = []
    for token_id in range(tokenizer.vocab_size):
        piece = backend.id_to_token(token_id)
        if token_id in added or piece is None:
            out.append((piece or "").encode())
        else:
            out.append(bytes(decode[c] for c in piece))
    return out, sorted(i for i, t in added.items() if t.special)


class _Vocabulary:
    """What llguidance.TokenizerWrapper reads: token bytes, special ids, an encoder."""

    def __init__(self, tokenizer):
        tokens, self.special_token_ids = token_bytes(tokenizer)
        special = set(self.special_token_ids)
        self.tokens = [b"\xff" + t if i in special else t for i, t in enumerate(tokens)]
        self.eos_token_id = tokenizer.eos_ids[0] if tokenizer.eos_ids else None
        self.bos_token_id = tokenizer.special.bos_id
        self._encode = tokenizer.encode

    def __call__(self, text: bytes | str) -> list[int]:
        text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        return self._encode(text, add_bos=False)


_TOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def ll_tokenizer(tokenizer):
    """llguidance's tokenizer for ours, built once per tokenizer (it walks the whole vocabulary)."""
    cached = _TOKENIZERS.get(tokenizer)
    if cached is None:
        if not tokenizer.eos_ids:
            raise InvalidArgument("structured output needs a tokenizer with an EOS id, to end a complete output")
        llg = llguidance_module()
        cached = llg.LLTokenizer(llg.TokenizerWrapper(_Vocabulary(tokenizer)), eos_token=list(tokenizer.eos_ids))
        _TOKENIZERS[tokenizer] = cached
    return cached


# -- the processor ---------------------------------------------------------------------
class _RowState:
    """One sequence's constraint, its matcher (made on the first step) and whether the constraint
    is complete with nothing more allowed."""

    def __init__(self, constraint: Constraint):
        self.constraint = constraint
        self.matcher = None
        self.done = False


def row_state(params) -> dict:
    """A new sequence's sampler state: it carries the sequence's own constraint, so that rows with
    different constraints share one sampler group (engine.chain_key keeps only whether there is one)."""
    constraint = constraint_of(params)
    return {} if constraint is None else {STATE_KEY: _RowState(constraint)}


def constraint_done(state: dict) -> bool:
    """True once the sequence owning `state` (its TokenHistory.states dict) finished its constraint."""
    row = state.get(STATE_KEY)
    return row is not None and row.done


def _unpack(bitmask: np.ndarray, vocab_size: int) -> np.ndarray:
    """(B, W) int32, one bit per token (bit j of word w is token 32w + j) -> (B, vocab_size) bool.

    [[0b101]] -> tokens 0 and 2 allowed. Little-endian words, so byte 4w + j // 8 holds bit j.
    """
    bits = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")  # (B, 32 W)
    return bits[:, :vocab_size].view(bool)  # (B, V)


class StructuredOutput(LogitsProcessor):
    """Scores of the tokens the row's constraint forbids become -inf; accepted tokens advance its matcher.

    constraint: what a row must produce unless its state brings its own (`row_state`: the
    runtime's sequences do, so one sampler serves rows with different schemas); tokenizer:
    ours (its token bytes build llguidance's); end_ids: EOS and stop_token_ids, allowed
    only once the row's constraint is complete.
    """

    name = "structured"

    def __init__(self, constraint: Constraint, tokenizer, end_ids: tuple[int, ...] = ()):
        if tokenizer is None:
            raise InvalidArgument("structured output needs the tokenizer (Sampler(..., tokenizer=...))")
        self.constraint = constraint
        compile_grammar(constraint.kind, constraint.text)
        self.tokenizer = ll_tokenizer(tokenizer)
        self.vocab = self.tokenizer.vocab_size
        self.end_ids = np.array(sorted(set(end_ids) | set(tokenizer.eos_ids)), dtype=np.int64)  # (E,)
        words = (self.vocab + 31) // 32  # end ids past the mask's words stay forbidden
        self._end_bits = [(int(e) // 32, np.uint32(1 << (int(e) % 32))) for e in self.end_ids if e < 32 * words]
        self._buffers: dict[int, np.ndarray] = {}
        self._executor = None

    def _row(self, history: TokenHistory, row: int) -> _RowState:
        state = history.states[row].get(STATE_KEY)
        if state is None:
            state = history.states[row][STATE_KEY] = _RowState(self.constraint)
        if state.matcher is None:
            kind, text = state.constraint.kind, state.constraint.text
            state.matcher = llguidance_module().LLMatcher(self.tokenizer, compile_grammar(kind, text), log_level=0)
            if state.matcher.is_error():  # compile_grammar checked it; a tokenizer-specific failure lands here
                raise InvalidArgument(f"{kind}: {state.matcher.get_error()}")
        return state

    def _bitmasks(self, history: TokenHistory) -> tuple[list[_RowState], np.ndarray]:
        """Each row's matcher and its next-token mask (B, W) uint32, bit j of word w for token 32w + j,
        with the end ids (EOS, stop_token_ids) allowed exactly where the row's constraint is complete."""
        from llguidance.numpy import fill_next_token_bitmask, fill_next_token_bitmask_par

        rows = [self._row(history, i) for i in range(history.batch_size)]
        bitmask = self._buffers.get(len(rows))
        if bitmask is None:  # reused from step to step: the matcher writes every word
            bitmask = self._buffers[len(rows)] = np.zeros((len(rows), (self.vocab + 31) // 32), dtype=np.int32)
        if len(rows) == 1:
            fill_next_token_bitmask(rows[0].matcher, bitmask, 0)
        else:  # one call for the batch; llguidance's threads compute the masks without the GIL
            if self._executor is None:
                self._executor = llguidance_module().LLExecutor()
            fill_next_token_bitmask_par(self._executor, [(r.matcher, i) for i, r in enumerate(rows)], bitmask)
        words = bitmask.view(np.uint32)
        for i, row in enumerate(rows):
            accepting = row.matcher.is_accepting()
            for word, bit in self._end_bits:
                words[i, word] = words[i, word] | bit if accepting else words[i, word] & ~bit
        return rows, words

    def _dead_end(self, rows: list[_RowState], allowed_any: np.ndarray) -> RuntimeError:
        row = rows[int((~allowed_any).argmax())]
        return RuntimeError(f"{row.constraint.kind}: the matcher allows no token: "
                            f"{row.matcher.get_error() or 'it reached a dead end'}")

    def allowed(self, history: TokenHistory, vocab_size: int) -> np.ndarray:
        """(B, vocab_size) bool: the tokens each row's constraint allows next.

        numpy rather than torch for these (B, V) steps: they are single-threaded memory
        passes, which torch would split over its intra-op threads for a 49,152-wide row.
        """
        rows, words = self._bitmasks(history)
        allowed = np.zeros((len(rows), vocab_size), dtype=bool)  # (B, V)
        known = min(vocab_size, self.vocab)
        allowed[:, :known] = _unpack(words, known)
        found = allowed.any(axis=1)  # (B,)
        if not found.all():
            raise self._dead_end(rows, found)
        return allowed

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        lib = blocks.library()
        if lib is not None and logits.device.type == "cpu" and logits.dtype == torch.float32 and logits.is_contiguous():
            rows, words = self._bitmasks(history)  # one C pass over each row (model/csrc/bitmask.c)
            out, empty = blocks.apply_bitmask(lib, words, logits, min(logits.shape[-1], self.vocab))
            if empty:
                raise self._dead_end(rows, np.asarray(out.isfinite().any(dim=1)))
            return out
        allowed = self.allowed(history, logits.shape[-1])  # (B, V)
        if logits.device.type != "cpu" or logits.dtype != torch.float32:
            return logits.masked_fill(~torch.from_numpy(allowed).to(logits.device), NEG_INF)
        return torch.from_numpy(np.where(allowed, logits.numpy(), np.float32(NEG_INF)))  # (B, V), a new array

    def accept(self, history: TokenHistory, scores: torch.Tensor, tokens: torch.Tensor) -> None:
        """Advance each row's matcher by its chosen token; mark it done when nothing more may follow."""
        ends = set(self.end_ids.tolist())
        for row, token in enumerate(tokens.tolist()):
            state = self._row(history, row)
            if token in ends:  # the sequence ends here; the constraint was complete (the mask saw to it)
                state.done = True
                continue
            if not state.matcher.consume_token(token):
                raise RuntimeError(f"{state.constraint.kind}: token {token} was chosen but the constraint "
                                   f"refuses it: {state.matcher.get_error()}")
            state.done = state.matcher.is_stopped()

    def describe(self) -> str:
        return f"structured: {self.constraint.describe()}"
