"""The key/value cache: memory the runtime owns, passed to the model's forward.

The model keeps no cache state. `KVPool` holds the keys and values of every live
sequence, one *slot* per sequence: per layer a (slots, Hkv, capacity, D) float32
tensor, slot s holding positions [0, length) of its sequence contiguously. A forward
pass gets a view of the pool for its rows (`PrefillView`, `DecodeView`) and each
attention layer calls `view.update(layer, k, v)`: it writes the new keys and values
and gets back everything its queries may read, and the mask that says which.

Why slots rather than paged blocks (vLLM's block tables). On a CPU, decoding reads
each sequence's keys with one batched product per layer, and a batch of slots
[0, B) is a plain view of the pool: nothing is copied per step. Paged blocks would
have to be gathered into that layout first (an index_select of every live key and
value, every layer, every step) or read by a kernel of their own.
`benchmarks/kv_layout.py` measures the two layouts on this model's shapes
(docs/performance.md, "KV layout"): the gather costs more than the attention itself from a few hundred
positions on, while the memory slots waste (each slot sized for the longest live
sequence) stays bounded by `max_tokens`, which the runtime checks at admission.
What blocks buy, sharing a prefix without a copy, slots get by copying the prefix's
keys and values into the new slot (a few MB, far cheaper than recomputing them).

Slots grow: the capacity starts small and doubles (to the model's context) when a
sequence needs more; the slot count grows the same way. Growth copies the pool, so
it happens a handful of times in a server's life, never per token.
"""

from __future__ import annotations

import functools

import torch

INITIAL_CAPACITY = 256  # positions per slot at first; doubled when a sequence needs more
READ_ALIGN = 64  # a decode step reads each slot up to a multiple of this many positions


class KVPool:
    """Keys and values of up to `slots` sequences, per layer (slots, Hkv, capacity, D)."""

    def __init__(self, n_layers: int, kv_heads: int, head_dim: int, max_len: int, dtype=torch.float32,
                 device: torch.device | str = "cpu"):
        self.n_layers, self.kv_heads, self.head_dim, self.max_len = n_layers, kv_heads, head_dim, max_len
        self.dtype, self.device = dtype, torch.device(device)
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.slots, self.capacity = 0, 0

    @property
    def bytes_per_position(self) -> int:
        return 2 * self.n_layers * self.kv_heads * self.head_dim * torch.finfo(self.dtype).bits // 8

    @property
    def nbytes(self) -> int:
        return self.slots * self.capacity * self.bytes_per_position

    def capacity_for(self, length: int) -> int:
        """Positions per slot after making room for `length`: doubling, up to the context."""
        capacity = self.capacity or min(INITIAL_CAPACITY, self.max_len)
        while capacity < length:
            capacity *= 2
        return min(max(capacity, length), self.max_len)

    def planned_tokens(self, slots: int, length: int) -> int:
        """Positions (slots × capacity) the pool needs at least for `slots` sequences of `length`."""
        return max(slots, self.slots) * self.capacity_for(max(length, self.capacity))

    def reserve(self, slots: int, length: int, max_positions: int | None = None) -> None:
        """Make room for `slots` sequences of `length` positions, within `max_positions` if given."""
        if slots <= self.slots and length <= self.capacity:
            return
        new_cap = self.capacity_for(max(length, self.capacity))
        new_slots = max(self.slots, -(-slots // 4) * 4)  # in fours: a few reallocations, not one per arrival
        if max_positions is not None:
            new_slots = max(slots, self.slots, min(new_slots, max_positions // new_cap))
        shape = (new_slots, self.kv_heads, new_cap, self.head_dim)
        for store in (self.k, self.v):
            for layer in range(self.n_layers):
                grown = torch.zeros(shape, dtype=self.dtype, device=self.device)
                if len(store) == self.n_layers:
                    grown[: self.slots, :, : self.capacity] = store[layer]
                    store[layer] = grown
                else:
                    store.append(grown)
        self.slots, self.capacity = new_slots, new_cap

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of slot src into slot dst (compaction)."""
        for store in (self.k, self.v):
            for tensor in store:
                tensor[dst, :, :length] = tensor[src, :, :length]

    def write_prefix(self, slot: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store a cached prefix, keys/values (layers, Hkv, P, D), at positions [0, P) of a slot."""
        P = keys.shape[2]
        for layer in range(self.n_layers):
            self.k[layer][slot, :, :P] = keys[layer]
            self.v[layer][slot, :, :P] = values[layer]

    def read_prefix(self, slot: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of positions [0, length) of a slot: (layers, Hkv, length, D) each."""
        keys = torch.stack([t[slot, :, :length] for t in self.k])
        values = torch.stack([t[slot, :, :length] for t in self.v])
        return keys, values

    def prefill_view(self, slot: int, start: int, length: int) -> "PrefillView":
        return PrefillView(self, slot, start, length)

    def decode_view(self, slots: list[int], lengths: list[int], always_indexed: bool = False) -> "DecodeView":
        return DecodeView(self, slots, lengths, always_indexed)


class PrefillView:
    """One sequence's next `length` positions, from `start`, in its slot: a prompt chunk.

    The chunk's queries see the slot's positions [0, start + t]: plain causal attention
    with the T queries aligned at the end, so no mask is needed.
    """

    def __init__(self, pool: KVPool, slot: int, start: int, length: int):
        self.pool, self.slot, self.start, self.end = pool, slot, start, start + length

    def positions(self) -> torch.Tensor:
        return torch.arange(self.start, self.end, device=self.pool.device)[None, :]  # (1, T)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (1, Hkv, T, D); return the slot's keys and values (1, Hkv, end, D) and no mask."""
        s = self.slot
        self.pool.k[layer][s, :, self.start : self.end] = k[0]
        self.pool.v[layer][s, :, self.start : self.end] = v[0]
        return self.pool.k[layer][s : s + 1, :, : self.end], self.pool.v[layer][s : s + 1, :, : self.end], None


class DecodeView:
    """One new position for each of several sequences, each at its own length.

    Row i writes at position lengths[i] of slots[i] and reads positions [0, lengths[i]].
    Slots [a, a + B) are read as a view of the pool; other slot lists are gathered.
    The mask (B, 1, 1, S), True where a row may read a position, is None when every
    row has the same length. always_indexed: one code path whatever the lengths (for
    torch.compile, so that one graph serves every step).
    """

    def __init__(self, pool: KVPool, slots: list[int], lengths: list[int], always_indexed: bool = False):
        self.pool = pool
        # Every row reads a multiple of READ_ALIGN positions, its own masked off at its length:
        # the softmax and the weighted sum then add the same terms in the same order whether a
        # sequence decodes alone or beside longer ones (the extra terms are exact zeros).
        self.end = min(-(-(max(lengths) + 1) // READ_ALIGN) * READ_ALIGN, pool.capacity)
        first = slots[0]
        contiguous = slots == list(range(first, first + len(slots)))
        self.rows = slice(first, first + len(slots)) if contiguous else None
        self.slot_index = torch.tensor(slots, dtype=torch.long, device=pool.device)
        self.lengths = torch.tensor(lengths, dtype=torch.long, device=pool.device)  # (B,)
        same = min(lengths) == max(lengths)
        self._full = same and lengths[0] + 1 == self.end
        self.same_length = lengths[0] if same and not always_indexed else None

    def positions(self) -> torch.Tensor:
        return self.lengths[:, None]  # (B, 1)

    @functools.cached_property
    def mask(self) -> torch.Tensor | None:
        """(B, 1, 1, S), True where a row may read a position; made on first use (the fused decode
        step reads lengths, not masks)."""
        if self._full:
            return None
        return (torch.arange(self.end, device=self.pool.device)[None, :] <= self.lengths[:, None])[:, None, None, :]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, Hkv, 1, D); return keys and values (B, Hkv, S, D) and the mask."""
        K, V = self.pool.k[layer], self.pool.v[layer]
        if self.rows is not None and self.same_length is not None:
            K[self.rows, :, self.same_length] = k[:, :, 0]
            V[self.rows, :, self.same_length] = v[:, :, 0]
        else:
            K[self.slot_index, :, self.lengths] = k[:, :, 0]
            V[self.slot_index, :, self.lengths] = v[:, :, 0]
        if self.rows is not None:
            return K[self.rows, :, : self.end], V[self.rows, :, : self.end], self.mask
        return K[self.slot_index, :, : self.end], V[self.slot_index, :, : self.end], self.mask
