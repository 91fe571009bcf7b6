"""Keys and values of prompt prefixes, kept for the next sequence that starts the same way.

A chat system prompt, the same retrieved passages, n > 1 samples of one prompt, a
classifier's labels after one text: each sequence that shares a prefix with an
earlier one takes that prefix's keys and values from here instead of recomputing
them. Prefixes are matched in blocks of `BLOCK` tokens, as vLLM's automatic prefix
caching does: each stored entry registers the hash chain of its blocks,

    h_1 = hash(block_1),  h_i = hash((h_{i-1}, block_i)),

so a lookup walks the new prompt's chain and stops at the first block no entry
has; the tokens themselves are then compared, so a hash collision can never hand
out the wrong keys. A generation's prompt is stored whole, with the logits after its
last position: the same prompt again (n > 1 samples, a repeated request) reuses all
of it and computes nothing, bit for bit what computing it again would give. A
partial match leaves the rest of the prompt to compute, in chunks that start where
the prefix ends: those positions' numbers can differ in the last bits from a run
that computed the whole prompt in one pass (other matrix shapes; native precision
rounds activations to bfloat16, which can make that visible).

Memory is bounded in positions (`max_tokens`); the least recently used entries go
first. Hits, misses and the positions reused are counted.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

BLOCK = 16  # tokens per matched block


@dataclass
class _Entry:
    ids: tuple[int, ...]
    keys: torch.Tensor  # (layers, Hkv, P, D)
    values: torch.Tensor  # (layers, Hkv, P, D)
    hashes: list[int]
    logits: torch.Tensor | None = None  # (1, V) after the last position, when the whole prompt is held


def block_hashes(ids: list[int] | tuple[int, ...], blocks: int) -> list[int]:
    """The hash chain of the first `blocks` full blocks of ids."""
    out, h = [], 0
    for b in range(blocks):
        h = hash((h, tuple(ids[b * BLOCK : (b + 1) * BLOCK])))
        out.append(h)
    return out


class PrefixCache:
    """Block-aligned prompt prefixes → their keys and values, least recently used evicted first."""

    def __init__(self, max_tokens: int):
        self.max_tokens = max_tokens
        self.entries: OrderedDict[int, _Entry] = OrderedDict()  # id → entry, oldest first
        self.by_hash: dict[int, int] = {}  # block-chain hash → entry id
        self.whole: dict[tuple[int, ...], int] = {}  # a whole prompt → the entry holding it and its logits
        self.tokens = 0
        self.hits = self.misses = self.reused_tokens = 0
        self._next_id = 0

    def lookup(self, ids: list[int], limit: int | None = None) -> tuple[int, torch.Tensor | None, torch.Tensor | None]:
        """The longest cached prefix of ids, shorter than ids and at most `limit` long:
        (length, keys, values), or (0, None, None)."""
        best, entry = 0, None
        limit = len(ids) - 1 if limit is None else min(limit, len(ids) - 1)
        for b, h in enumerate(block_hashes(ids, limit // BLOCK), start=1):
            found = self.entries.get(self.by_hash.get(h, -1))
            if found is None or found.ids[: b * BLOCK] != tuple(ids[: b * BLOCK]):
                break
            best, entry = b * BLOCK, found
        if entry is None:
            self.misses += 1
            return 0, None, None
        self.hits += 1
        self.reused_tokens += best
        self.entries.move_to_end(self.by_hash[block_hashes(ids, best // BLOCK)[-1]])
        return best, entry.keys[:, :, :best], entry.values[:, :, :best]

    def covered(self, ids: list[int]) -> int:
        """How many leading tokens of ids some entry already holds (block-aligned)."""
        length = 0
        for b, h in enumerate(block_hashes(ids, len(ids) // BLOCK), start=1):
            found = self.entries.get(self.by_hash.get(h, -1))
            if found is None or found.ids[: b * BLOCK] != tuple(ids[: b * BLOCK]):
                break
            length = b * BLOCK
        return length

    def wants(self, ids: list[int]) -> bool:
        """Whether storing ids would add blocks that are not cached yet."""
        blocks = len(ids) // BLOCK
        return 0 < blocks * BLOCK <= self.max_tokens and self.covered(ids) < blocks * BLOCK

    def exact(self, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Keys, values (layers, Hkv, len(ids), D) and last logits (1, V) of exactly this prompt, if stored whole."""
        entry_id = self.whole.get(tuple(ids))
        if entry_id is None:
            return None
        entry = self.entries[entry_id]
        self.entries.move_to_end(entry_id)
        self.hits += 1
        self.reused_tokens += len(ids)
        return entry.keys, entry.values, entry.logits

    def store(self, ids: list[int], keys: torch.Tensor, values: torch.Tensor,
              logits: torch.Tensor | None = None) -> None:
        """Keep ids with their keys and values (layers, Hkv, ≥ P, D): the whole prompt when its
        last logits (1, V) come with it, else its block-aligned prefix."""
        length = len(ids) if logits is not None else (len(ids) // BLOCK) * BLOCK
        if length == 0 or length > self.max_tokens:
            return
        hashes = block_hashes(ids, length // BLOCK)
        entry_id, self._next_id = self._next_id, self._next_id + 1
        entry = _Entry(tuple(ids[:length]), keys[:, :, :length].clone(), values[:, :, :length].clone(), hashes,
                       None if logits is None else logits.clone())
        self.entries[entry_id] = entry
        for h in hashes:  # the newest entry answers for every block it holds
            self.by_hash[h] = entry_id
        if logits is not None:
            self.whole[entry.ids] = entry_id
        self.tokens += length
        while self.tokens > self.max_tokens:
            self._evict()

    def _evict(self) -> None:
        entry_id, entry = self.entries.popitem(last=False)
        self.tokens -= len(entry.ids)
        for h in entry.hashes:
            if self.by_hash.get(h) == entry_id:
                del self.by_hash[h]
        if self.whole.get(entry.ids) == entry_id:
            del self.whole[entry.ids]
        # blocks this entry shared with a surviving one are still answered by it
        for other_id, other in self.entries.items():
            for h in other.hashes:
                self.by_hash.setdefault(h, other_id)

    def stats(self) -> dict:
        return {"prefix_hits": self.hits, "prefix_misses": self.misses,
                "prefix_cached_tokens": self.reused_tokens, "prefix_stored_tokens": self.tokens}
