"""DRY, "don't repeat yourself" (p-e-w, 2024; llama.cpp's `llama_sampler_init_dry`).

A token is penalised when emitting it would extend a sequence that already occurred
earlier in the context. With the scanned window w (the last penalty_last_n tokens of
prompt + output), for every earlier position j let

    n_j = the length of the longest common suffix of w[..j] and w (matches may overlap),
          capped at rep_limit (the tokens after the last sequence breaker)

The token that followed position j, w[j+1], would turn that repeat into n_j + 1 tokens.
Every token t with some n_j ≥ allowed_length among its occurrences w[j+1] = t gets

    s_t = l_t − multiplier · base^min(N_t − allowed_length, E),   N_t = max n_j over them,
    E = ⌊88.7228391 / ln base⌋ (llama.cpp's overflow cap; no cap when base ≤ 1.000001)

except the tokens that are sequence breakers on their own: they are never penalised.

Worked example, multiplier 1, base 2, allowed_length 2, no breakers:
w = [a b c d a b c] → the suffix "a b c" also ends at j=2 (n=3); "b c", "c" end nowhere
else. So d, which followed it, loses 1 · 2^(3−2) = 2. Ending in [... a b] would cost
d only 2^0 = 1; ending in [... b] costs nothing (1 < allowed_length).

Sequence breakers are strings, found in the vocabulary once per (tokenizer, breakers)
(cached): every token whose text contains a breaker is a *head* with an empty tail;
every token whose text ends with a proper prefix of a breaker is a head whose tail is
the tokenization of the breaker's rest ("restart sequences"). Scanning the window from
its end, the first head followed by one of its tails (the longest one that fits) ends
the search: rep_limit = the number of tokens after that breaker, and nothing is
penalised when rep_limit < allowed_length.

llama.cpp's caps, kept: a breaker is cut to 40 bytes, a tail to 20 tokens; the penalty
exponent to E above. Its arithmetic, kept for bitwise equality: the penalty is
float32(float64(multiplier) · float64(base)^k) with both parameters rounded to float32
first (C++'s pow(float, int) computes in double), subtracted from the float32 logit.
Differences, by choice: token texts are matched as Unicode text from
`Tokenizer.token_text` where llama.cpp matches raw bytes (the same for ASCII breakers,
which is every default one; a non-ASCII breaker split inside one character by a
token is missed here), and tails are tokenized with special tokens recognised.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.params import check_float, check_int
from tokenloom.generation.processors import LogitsProcessor

MAX_BREAKER_BYTES = 40  # llama.cpp's MAX_CHAR_LEN
MAX_TAIL_TOKENS = 20  # llama.cpp's MAX_SEQ_LEN
FLOAT_MAX_LOG = 88.7228391  # ln of float32's largest value, as llama.cpp writes it


@dataclass(frozen=True)
class SequenceBreakers:
    """The breaker strings as token structures: head token id -> the tails that may follow it.

    An empty tail means the head alone is a breaker (its text contains one).
    "\\n" in a vocabulary with "\\n" and ".\\n": both ids map to {()}.
    """

    heads: dict[int, frozenset[tuple[int, ...]]]

    @property
    def single(self) -> frozenset[int]:
        """Tokens that are a breaker on their own: DRY never penalises them."""
        return frozenset(t for t, tails in self.heads.items() if () in tails)

    def rep_limit(self, window: list[int]) -> int:
        """How many tokens at the end of `window` come after its last complete breaker (len if none)."""
        for back in range(len(window)):  # back tokens from the end: window[-1 - back]
            tails = self.heads.get(window[-1 - back])
            if tails is None:
                continue
            start = len(window) - back  # the tail would begin here
            fits = [len(t) for t in tails if len(t) <= back and tuple(window[start:start + len(t)]) == t]
            if fits:
                return back - max(fits)
        return len(window)


def _cut(breaker: str) -> str:
    """llama.cpp keeps a breaker's first 40 bytes (here: never half a character)."""
    return breaker.encode("utf-8")[:MAX_BREAKER_BYTES].decode("utf-8", errors="ignore")


def _build_breakers(tokenizer, breakers: tuple[str, ...], texts: list[str]) -> SequenceBreakers:
    heads: dict[int, set[tuple[int, ...]]] = {}
    tail_ids: dict[str, tuple[int, ...]] = {}
    for breaker in map(_cut, breakers):
        prefixes = [breaker[:k] for k in range(1, len(breaker))]
        for token, text in enumerate(texts):
            if breaker in text:
                heads.setdefault(token, set()).add(())
                continue
            for k, prefix in enumerate(prefixes, start=1):
                if text.endswith(prefix):
                    rest = breaker[k:]
                    if rest not in tail_ids:
                        tail_ids[rest] = tuple(tokenizer.encode(rest, add_bos=False)[:MAX_TAIL_TOKENS])
                    heads.setdefault(token, set()).add(tail_ids[rest])
    return SequenceBreakers({t: frozenset(tails) for t, tails in heads.items()})


_TEXTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> every token's text
_BREAKERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> {breakers: structures}
_LOCK = threading.Lock()


def _token_texts(tokenizer) -> list[str]:
    if tokenizer not in _TEXTS:
        ids = [[i] for i in range(tokenizer.vocab_size)]
        backend = getattr(tokenizer, "backend", None)
        _TEXTS[tokenizer] = backend.decode_batch(ids, skip_special_tokens=False) if backend is not None \
            else [tokenizer.token_text(i[0]) for i in ids]
    return _TEXTS[tokenizer]


def sequence_breakers(tokenizer, breakers: tuple[str, ...]) -> SequenceBreakers:
    """The breakers' token structures for this tokenizer, built once (a scan of the vocabulary)."""
    breakers = tuple(breakers)
    with _LOCK:
        per_tokenizer = _BREAKERS.setdefault(tokenizer, {})
        if breakers not in per_tokenizer:
            per_tokenizer[breakers] = _build_breakers(tokenizer, breakers, _token_texts(tokenizer))
        return per_tokenizer[breakers]


def repeat_lengths(window: torch.Tensor, limit: int, cap: int) -> torch.Tensor:
    """(L,) ids -> (L-1,) n_j: the longest common suffix of window[:j+1] and window, ≤ min(limit, cap).

    Every candidate j extends one token per round, all in one vectorised step, and drops
    out at its first mismatch, so the rounds number the longest repeat (at most cap).
    [5, 6, 7, 5, 6] -> [0, 2, 0, 0]: the suffix (5, 6) also ends at j=1.
    """
    last = window.shape[0] - 1
    lengths = torch.zeros(last, dtype=torch.long)  # (L-1,)
    alive = torch.arange(last)  # candidates j whose suffix still matches
    m = 0
    while alive.numel() and m < min(limit, cap):
        alive = alive[alive >= m]
        alive = alive[window[alive - m] == window[last - m]]
        m += 1
        lengths[alive] = m
    return lengths


class DRY(LogitsProcessor):
    """llama.cpp's DRY penalty (see the module docstring for the formula and an example).

    multiplier > 0; base ≥ 1; allowed_length ≥ 0; penalty_last_n: -1 = the whole
    context, else the window size ≥ 1; breakers: from `sequence_breakers`, or None.
    """

    name = "dry"

    def __init__(self, multiplier: float, base: float, allowed_length: int, penalty_last_n: int,
                 breakers: SequenceBreakers | None = None, breaker_names: tuple[str, ...] = ()):
        self.multiplier = check_float("dry_multiplier", multiplier, 0.0, low_open=True)
        self.base = check_float("dry_base", base, 1.0)
        self.allowed_length = check_int("dry_allowed_length", allowed_length, 0)
        if penalty_last_n == 0:
            raise InvalidArgument("dry_penalty_last_n must be -1 (the whole context) or >= 1 here; 0 is off")
        self.last_n = check_int("dry_penalty_last_n", penalty_last_n, -1, note=" (-1 = the whole context)")
        self.breakers = breakers or SequenceBreakers({})
        self.breaker_names = breaker_names
        base32 = float(torch.tensor(self.base, dtype=torch.float32))
        self._multiplier32 = float(torch.tensor(self.multiplier, dtype=torch.float32))
        self._base32 = base32
        log_base = torch.tensor(base32, dtype=torch.float32).log()
        self.max_exponent = int(torch.tensor(FLOAT_MAX_LOG, dtype=torch.float32) / log_base) \
            if base32 > 1.000001 else 0
        self._single = torch.tensor(sorted(self.breakers.single), dtype=torch.long)

    def penalties(self, sequence: list[int], vocab_size: int) -> torch.Tensor:
        """(V,) float32: what this step subtracts from each logit after `sequence`."""
        out = torch.zeros(vocab_size, dtype=torch.float32)  # (V,)
        window = sequence if self.last_n == -1 else sequence[-self.last_n:]
        if len(window) <= self.allowed_length:
            return out
        limit = self.breakers.rep_limit(window) if self.breakers.heads else len(window)
        if limit < self.allowed_length:
            return out
        cap = self.allowed_length + self.max_exponent if self.max_exponent > 0 else len(window)
        ids = torch.tensor(window, dtype=torch.long)  # (L,)
        lengths = repeat_lengths(ids, limit, cap)  # (L-1,)
        hit = lengths >= self.allowed_length  # (L-1,)
        if not bool(hit.any()):
            return out
        longest = torch.full((vocab_size,), -1, dtype=torch.long)  # (V,) N_t, -1 where none
        longest.scatter_reduce_(0, ids[1:][hit], lengths[hit], reduce="amax")
        longest[self._single] = -1
        tokens = (longest >= 0).nonzero().squeeze(-1)  # (K,)
        exponent = (longest[tokens] - self.allowed_length).double()  # (K,)
        if self.max_exponent > 0:
            exponent = exponent.clamp(max=self.max_exponent)
        out[tokens] = (self._multiplier32 * torch.pow(torch.tensor(self._base32, dtype=torch.float64),
                                                      exponent)).float()
        return out

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        rows = [self.penalties(history.sequence(row), logits.shape[-1]) for row in range(logits.shape[0])]
        return logits - torch.stack(rows).to(logits.device, logits.dtype)  # (B, V)

    def describe(self) -> str:
        window = "whole context" if self.last_n == -1 else f"last {self.last_n}"
        breakers = ", ".join(repr(b) for b in self.breaker_names) or "none"
        return (f"dry_multiplier={self.multiplier:g}, base={self.base:g}, allowed_length={self.allowed_length} "
                f"({window}; breakers: {breakers})")


def dry_from_params(params, tokenizer) -> DRY | None:
    """The DRY step for SamplingParams, or None when it is off (multiplier 0 or window 0)."""
    if params.dry_multiplier == 0.0 or params.dry_penalty_last_n == 0:
        return None
    breakers = None
    if params.dry_sequence_breakers:
        if tokenizer is None:
            raise InvalidArgument(
                "dry_sequence_breakers are strings and need the tokenizer to find the tokens that contain "
                "them: pass tokenizer= to Sampler, or dry_sequence_breakers=() for none")
        breakers = sequence_breakers(tokenizer, params.dry_sequence_breakers)
    return DRY(params.dry_multiplier, params.dry_base, params.dry_allowed_length, params.dry_penalty_last_n,
               breakers, params.dry_sequence_breakers)
