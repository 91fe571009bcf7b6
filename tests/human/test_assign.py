"""Balanced assignment: K raters per item, none twice, loads within one, layouts balanced."""

from collections import Counter

import pytest

from tokenloom.errors import InvalidArgument
from tokenloom.human.assign import assign


@pytest.mark.parametrize("n_items, n_raters, per_item", [(10, 4, 2), (7, 3, 3), (50, 7, 3), (1, 5, 1), (13, 13, 5)])
def test_every_item_gets_k_distinct_raters_and_loads_are_balanced(n_items, n_raters, per_item):
    queues = assign(n_items, n_raters, per_item, seed=3)
    raters_of = Counter()
    for queue in queues:
        items = [s.item for s in queue]
        assert len(items) == len(set(items)), "a rater saw an item twice"
        raters_of.update(items)
    assert raters_of == Counter({i: per_item for i in range(n_items)})
    loads = [len(q) for q in queues]
    assert max(loads) - min(loads) <= 1


def test_left_right_layouts_are_split_evenly_per_item():
    queues = assign(40, 6, 4, seed=1)
    flips = Counter()
    for queue in queues:
        for slot in queue:
            flips[slot.item] += slot.flip
    assert set(flips.values()) == {2}


def test_odd_panels_do_not_favour_one_layout_study_wide():
    queues = assign(400, 3, 3, seed=2)
    swapped = sum(s.flip for q in queues for s in q)
    assert abs(swapped / 1200 - 0.5) < 0.05  # [F, T, F] on every item would give 1/3


def test_orders_differ_between_raters_and_repeat_with_the_seed():
    a, b = assign(30, 3, 3, seed=5), assign(30, 3, 3, seed=5)
    assert a == b
    orders = {tuple(s.item for s in q) for q in a}
    assert len(orders) == 3
    assert assign(30, 3, 3, seed=6) != a


def test_check_items_go_to_every_rater():
    queues = assign(6, 3, 1, seed=0, check_items=(6, 7))
    assert all({6, 7} <= {s.item for s in q} for q in queues)


@pytest.mark.parametrize("args, message", [((5, 2, 3), "between 1 and --raters"), ((0, 2, 1), "at least one item"),
                                           ((5, 0, 1), "--raters must be at least 1")])
def test_impossible_designs_are_refused(args, message):
    with pytest.raises(InvalidArgument, match=message):
        assign(*args)
