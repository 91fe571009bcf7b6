"""Longest common subsequence, bit-parallel, with rouge-score's choice among ties.

The dynamic-programming table L[i][j] (LCS of ref[:i] and can[:j]) is never built
cell by cell. Row i is kept as one integer V_i whose bit j is 0 where the row
steps up (L[i][j+1] = L[i][j] + 1), so L[i][j] = number of zero bits of V_i
below bit j. With M_t the bit mask of the positions of token t in `can`
(Allison & Dix 1986; Hyyrö 2004):

    V_0 = 1…1 (n ones),   U = V_{i-1} & M_{ref[i-1]},   V_i = (V_{i-1} + U) | (V_{i-1} − U)

so each row costs a handful of integer operations whatever its length.

    >>> lcs_length("ABCBDAB", "BDCABA")
    4
    >>> lcs_indices("ABCBDAB", "BDCABA")   # rouge-score's pick: B C B A
    [1, 2, 3, 5]
"""

from collections.abc import Sequence


_BITS = [1 << position for position in range(256)]


def match_masks(can: Sequence, distinct_likely: bool = True) -> dict:
    """Token -> bit mask of its positions in `can`: 'aba' -> {'a': 0b101, 'b': 0b010}.
    `distinct_likely` first tries building it in C, which is right when no token
    repeats (most single sentences); whole texts nearly always repeat a word."""
    if distinct_likely and len(can) <= len(_BITS):
        masks = dict(zip(can, _BITS))
        if len(masks) == len(can):
            return masks
    masks = {}
    bit = 1
    for token in can:
        masks[token] = masks.get(token, 0) | bit
        bit <<= 1
    return masks


def lcs_length(ref: Sequence, can: Sequence) -> int:
    """Length of the longest common subsequence of two token sequences."""
    if not ref or not can:
        return 0
    masks = match_masks(can, distinct_likely=False)
    full = (1 << len(can)) - 1
    row = full
    get = masks.get
    for token in ref:
        match = get(token)
        if match:  # a token absent from `can` leaves the row unchanged
            low = row & match
            row = ((row + low) | (row - low)) & full
    return len(can) - row.bit_count()


def lcs_indices(ref: Sequence, can: Sequence, masks: dict | None = None) -> list[int]:
    """Positions in `ref` of one longest common subsequence, in increasing order.

    Among several LCSs this picks the one rouge-score's backtrack picks: walking
    back from the bottom-right cell, take a match whenever the two tokens are
    equal, else move left if `L[i][j-1] > L[i-1][j]`, else move up. ROUGE-Lsum's
    union of LCSs, hence its score, depends on this choice. `masks` may carry
    `match_masks(can)` when the caller pairs one `can` with many `ref`s.
    """
    return lcs_picks(list(enumerate(ref)), can, match_masks(can) if masks is None else masks)


def lcs_picks(items: Sequence[tuple[int, object]], can: Sequence, masks: dict) -> list[int]:
    """`lcs_indices` on `ref` given as its (position, token) pairs, `masks` being
    `match_masks(can)`. Pairs whose token is absent from `can` may be left out:
    their rows repeat the row above, so the walk could only go up through them.
    The walk stops as soon as it has picked LCS-many positions.
    """
    full = (1 << len(can)) - 1
    # steps[k + 1]: the step bits Z of the row after the k-th kept pair; steps[0], all zeros, is row 0
    row, steps, kept = full, [0], []
    get = masks.get
    for item in items:
        match = get(item[1])
        if match:
            low = row & match
            row = ((row + low) | (row - low)) & full
            steps.append(full ^ row)
            kept.append(item)
    if len(kept) <= 1:  # one row with matches: the LCS is that one token
        return [kept[0][0]] if kept else []
    left = steps[-1].bit_count()  # LCS length: positions still to pick
    picked: list[int] = []
    k, j = len(kept) - 1, len(can)
    while left:
        index, token = kept[k]
        if token == can[j - 1]:
            picked.append(index)
            left -= 1
            k -= 1
            j -= 1
        elif (steps[k + 1] & ((1 << (j - 1)) - 1)).bit_count() > (steps[k] & ((1 << j) - 1)).bit_count():
            j -= 1
        else:
            k -= 1
    picked.reverse()
    return picked
