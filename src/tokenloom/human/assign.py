"""Who rates what, in which order, and which output is shown on the left.

Balanced assignment of `n_items` study items to `n_raters` raters, `per_item`
raters each:

* items are shuffled, then dealt round-robin over a shuffled list of raters:
  slot s = item·K + j (j < K) goes to rater perm[s mod R]. K consecutive slots
  fall on K different raters as long as K ≤ R, so no rater sees an item twice,
  and the loads differ by at most one (they are ⌊nK/R⌋ or ⌈nK/R⌉);
* every rater also gets every check item (gold, attention);
* each rater's queue is shuffled on its own, so raters see items in different
  orders (order effects average out instead of piling up on some items);
* for pairwise items the K raters of an item are split as evenly as possible
  between the two left/right layouts (for odd K a coin picks which layout gets
  the extra rater), so position bias cannot favour a system.

    >>> [len(q) for q in assign(10, 4, 2, seed=0)]
    [5, 5, 5, 5]
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tokenloom.errors import InvalidArgument


@dataclass(frozen=True)
class Slot:
    """One entry of a rater's queue: item index, and whether the pair is shown
    swapped (outputs[1] on the left as "A")."""

    item: int
    flip: bool


def check_design(n_items: int, n_raters: int, per_item: int) -> None:
    if n_items < 1:
        raise InvalidArgument("a study needs at least one item to rate")
    if n_raters < 1:
        raise InvalidArgument(f"--raters must be at least 1; got {n_raters}")
    if not 1 <= per_item <= n_raters:
        raise InvalidArgument(f"--per-item must be between 1 and --raters ({n_raters}), since no rater sees "
                              f"an item twice; got {per_item}")


def _balanced_flips(k: int, rng: random.Random) -> list[bool]:
    """k layouts, half swapped; for odd k a coin decides which layout gets the extra one
    (always the same one would show one system on the left more often, study-wide)."""
    offset = rng.random() < 0.5
    flips = [(j + offset) % 2 == 1 for j in range(k)]
    rng.shuffle(flips)
    return flips


def assign(n_items: int, n_raters: int, per_item: int, seed: int = 0,
           check_items: tuple[int, ...] = ()) -> list[list[Slot]]:
    """One queue per rater: items 0..n_items-1 dealt as described above, plus
    every index in `check_items` (gold/attention items, numbered after them)."""
    check_design(n_items, n_raters, per_item)
    rng = random.Random(seed)
    raters = list(range(n_raters))
    rng.shuffle(raters)
    order = list(range(n_items))
    rng.shuffle(order)
    queues: list[list[Slot]] = [[] for _ in range(n_raters)]
    slot = 0
    for item in order:
        for flip in _balanced_flips(per_item, rng):
            queues[raters[slot % n_raters]].append(Slot(item, flip))
            slot += 1
    for item in check_items:
        for queue in queues:
            queue.append(Slot(item, rng.random() < 0.5))
    for queue in queues:
        rng.shuffle(queue)
    return queues
