"""Teacher-forced scoring: log P(x_t | x_<t) of given tokens, window by window.

A text of N tokens is cut into windows of at most `context` input tokens. The
logits at input position j of a window predict the token at j + 1, so a window
with input x[b:e] can score the targets x[b+1 .. e]. Windows are laid out by
their ends:

    e_0 = min(C, N-1),  e_k = min(e_{k-1} + S, N-1),  b_k = max(0, e_k - C)

and window k scores the targets it adds, x[e_{k-1}+1 .. e_k] (window 0 scores
x[1 .. e_0]). Every token but the first is scored exactly once, with at least
C - S tokens of context (the first window's tokens excepted); the last window is
anchored at the end of the text, so it has a full context too.

    N = 10, C = 4, S = 2:  inputs x[0:4] x[2:6] x[4:8] x[5:9]
                           scored  1..4   5..6   7..8   9
    S = C gives disjoint windows: x[0:4] scores 1..4, x[4:8] scores 5..8, ...
    which is lm-evaluation-harness's rolling log-likelihood (each window also
    predicts the first token of the next one).

Only the scored positions go through the last block's queries and MLP and through
the output layer (V = 49152 for SmolLM2, a large share of the cost): the model's
`hidden(ids, keep=n)` gives the final hidden states of the last n positions, and
the output layer is applied here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenloom.model import native

HEAD_CHUNK = 128  # positions per output-layer chunk: the (chunk, V) logits stay in the CPU's cache (25 MB)


@dataclass(frozen=True)
class Window:
    """Input ids[begin:end]; scores the targets ids[first .. end] (inclusive)."""

    begin: int
    end: int
    first: int

    @property
    def scored(self) -> int:
        return self.end + 1 - self.first


def plan_windows(n_tokens: int, context: int, stride: int) -> list[Window]:
    """The windows that score tokens 1..N-1 once each (see the module docstring).

    >>> [(w.begin, w.end, w.first) for w in plan_windows(10, 4, 2)]
    [(0, 4, 1), (2, 6, 5), (4, 8, 7), (5, 9, 9)]
    """
    windows, end, first = [], min(context, n_tokens - 1), 1
    while True:
        windows.append(Window(max(0, end - context), end, first))
        if end == n_tokens - 1:
            return windows
        first, end = end + 1, min(end + stride, n_tokens - 1)


@dataclass
class ScoredBatch:
    """Scores of the targets of a batch of windows, in text order within each window."""

    doc: torch.Tensor  # (M,) which document each target belongs to
    position: torch.Tensor  # (M,) position of the target in its document's ids
    nll: torch.Tensor  # (M,) float64: -log P(target | context), nats
    top_ids: torch.Tensor | None = None  # (M, k) the most likely tokens at that position
    top_logp: torch.Tensor | None = None  # (M, k) their log-probabilities


def head_scores(model, hidden: torch.Tensor, targets: torch.Tensor, top: int = 0):
    """-log P(target) for hidden states (M, C) and targets (M,): logsumexp(l) - l[target].

    With top > 0, also the `top` most likely ids and their log-probabilities. The
    logits are made and used in chunks of HEAD_CHUNK positions, so that each chunk's
    logits stay in the CPU's cache (faster than one large chunk; docs/performance.md).
    """
    nll, top_ids, top_logp = [], [], []
    for start in range(0, hidden.shape[0], HEAD_CHUNK):
        h, t = hidden[start : start + HEAD_CHUNK], targets[start : start + HEAD_CHUNK]
        logits = model.project(h).float()  # (m, V)
        target = logits.gather(1, t[:, None]).squeeze(1)  # (m,)
        if native.logsumexp_usable(logits):  # two passes over each row, nothing written (model/native.py)
            norm = native.logsumexp(logits)  # (m,)
            chunk = norm - target
        else:  # PyTorch's fastest way: one fused log-softmax and pick
            chunk = F.cross_entropy(logits, t, reduction="none")  # (m,)
            norm = chunk + target
        nll.append(chunk)
        if top:
            values, ids = logits.topk(top, dim=-1)  # (m, k)
            top_ids.append(ids)
            top_logp.append(values - norm[:, None])
    nll = torch.cat(nll).double()
    if not top:
        return nll, None, None
    return nll, torch.cat(top_ids), torch.cat(top_logp)


def score_windows(
    model, docs: list[torch.Tensor], jobs: list[tuple[int, Window]], top: int = 0
) -> ScoredBatch:
    """Run one batch of equal-length windows (doc index, window) and score their targets."""
    rows = torch.stack([docs[d][w.begin : w.end] for d, w in jobs]).to(model.device)  # (B, L)
    B, L = rows.shape
    keep = max(w.scored for _, w in jobs)  # a window's scored targets follow its last `scored` inputs
    hidden = model.hidden(rows, keep=keep)  # (B, keep, C): inputs L - keep .. L - 1
    flat, doc, position, targets = [], [], [], []
    for row, (d, w) in enumerate(jobs):
        pos = torch.arange(w.first, w.end + 1)  # target positions in the document
        flat.append(row * keep + (pos - 1 - w.begin) - (L - keep))  # the input positions that predict them
        doc.append(torch.full_like(pos, d))
        position.append(pos)
        targets.append(docs[d][pos])
    picked = hidden.reshape(B * keep, -1).index_select(0, torch.cat(flat).to(hidden.device))  # (M, C)
    nll, top_ids, top_logp = head_scores(model, picked, torch.cat(targets).to(hidden.device), top)
    if nll.device.type != "cpu":  # a model on CUDA: the scores come back to the CPU
        nll, top_ids, top_logp = (t.cpu() if t is not None else None for t in (nll, top_ids, top_logp))
    return ScoredBatch(torch.cat(doc), torch.cat(position), nll, top_ids, top_logp)


def batches(docs: list[torch.Tensor], context: int, stride: int, batch_size: int) -> list[list[tuple[int, Window]]]:
    """All windows of all documents, grouped into batches of windows of one input length."""
    by_length: dict[int, list[tuple[int, Window]]] = {}
    for d, ids in enumerate(docs):
        for w in plan_windows(len(ids), context, stride):
            by_length.setdefault(w.end - w.begin, []).append((d, w))
    out = []
    for length in sorted(by_length, reverse=True):
        jobs = by_length[length]
        out.extend(jobs[i : i + batch_size] for i in range(0, len(jobs), batch_size))
    return out


def run_batches(model, docs, plan, top: int = 0) -> Iterator[ScoredBatch]:
    """Score each batch of `plan` in inference mode."""
    with torch.inference_mode():
        for jobs in plan:
            yield score_windows(model, docs, jobs, top)
