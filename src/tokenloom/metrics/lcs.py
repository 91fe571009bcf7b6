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


def _match_masks(can: Sequence) -> dict:
    """Token -> bit mask of its positions in `can`: 'aba' -> {'a': 0b101, 'b': 0b010}."""
    masks: dict = {}
    bit = 1
    for token in can:
        masks[token] = masks.get(token, 0) | bit
        bit <<= 1
    return masks


def lcs_length(ref: Sequence, can: Sequence) -> int:
    """Length of the longest common subsequence of two token sequences."""
    if not ref or not can:
        return 0
    masks = _match_masks(can)
    full = (1 << len(can)) - 1
    row = full
    get = masks.get
    for token in ref:
        match = get(token)
        if match:  # a token absent from `can` leaves the row unchanged
            low = row & match
            row = ((row + low) | (row - low)) & full
    return len(can) - row.bit_count()


def _step_rows(ref: Sequence, can: Sequence) -> list[int]:
    """Z_i = the complement of V_i for i = 0..len(ref): bit j set where row i steps up."""
    masks = _match_masks(can)
    full = (1 << len(can)) - 1
    row, rows = full, [0]
    get = masks.get
    for token in ref:
        match = get(token, 0)
        low = row & match
        row = ((row + low) | (row - low)) & full
        rows.append(full ^ row)
    return rows


def lcs_indices(ref: Sequence, can: Sequence) -> list[int]:
    """Positions in `ref` of one longest common subsequence, in increasing order.

    Among several LCSs this picks the one rouge-score's backtrack picks: walking
    back from the bottom-right cell, take a match whenever the two tokens are
    equal, else move left if L[i][j-1] > L[i-1][j], else move up. ROUGE-Lsum's
    union of LCSs, hence its score, depends on this choice.
    """
    rows = _step_rows(ref, can)
    i, j = len(ref), len(can)
    picked = []
    while i > 0 and j > 0:
        if ref[i - 1] == can[j - 1]:
            picked.append(i - 1)
            i, j = i - 1, j - 1
        elif (rows[i] & ((1 << (j - 1)) - 1)).bit_count() > (rows[i - 1] & ((1 << j) - 1)).bit_count():
            j -= 1
        else:
            i -= 1
    picked.reverse()
    return picked
