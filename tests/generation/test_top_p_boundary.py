"""Top-p at its boundary: the fast path (the best 1,024 tokens of a large vocabulary) keeps
exactly what the full sort keeps and what a float64 reference keeps. The cases are those
that exposed the old fast path, which took the mass outside the best 1,024 as
1 − Σ(best 1,024) of a float32 softmax that does not sum to 1."""

from __future__ import annotations

import pytest
import torch

from tokenloom.generation.history import TokenHistory
from tokenloom.generation.params import SamplingParams
from tokenloom.generation.columns import nucleus_probe
from tokenloom.generation.processors import TopP
from tokenloom.generation.sampler import Sampler


def kept_count(logits: torch.Tensor, p: float) -> int:
    return int(TopP(p)(TokenHistory([[]], logits.shape[-1]), logits[None]).isfinite().sum())


def reference_count(logits: torch.Tensor, p: float) -> int:
    """float64: the fewest best tokens whose mass reaches p."""
    probs = torch.sort(logits.double().softmax(-1), descending=True).values
    above = torch.cat([torch.zeros(1, dtype=torch.float64), probs.cumsum(0)[:-1]])  # mass above each token
    return int((above < p).sum())


@pytest.mark.parametrize("cases", [60, pytest.param(300, marks=pytest.mark.slow)])
def test_p_just_above_a_boundary_keeps_the_reference_count_on_the_fast_path(cases):
    generator = torch.Generator().manual_seed(0)
    wrong = probed = 0
    for case in range(cases):
        logits = torch.randn(49152, generator=generator) * (3.0 + case % 4)  # (V,) peaked enough to probe
        probs = torch.sort(logits.double().softmax(-1), descending=True).values
        r = 1 + case % 40
        p = float(probs[:r].sum()) + 1e-5  # 1e-5 above the boundary after the r-th token
        probed += nucleus_probe(logits.double().softmax(-1)[None], p) is not None
        wrong += kept_count(logits, p) != reference_count(logits, p)
    assert wrong == 0 and probed >= cases // 2  # most cases went through the fast path


def test_two_tokens_at_045_and_a_tied_tail_keep_three():
    vocab = 8192
    tail = 0.1 / (vocab - 2)
    probs = torch.cat([torch.tensor([0.45, 0.45], dtype=torch.float64), torch.full((vocab - 2,), tail,
                                                                                  dtype=torch.float64)])
    logits = probs.log().float()
    kept = TopP(0.90001)(TokenHistory([[]], vocab), logits[None]).isfinite()[0]
    assert int(kept.sum()) == 3 and kept[:3].all()  # the tied tail gives its lowest id


def test_real_logits_keep_the_token_that_crosses_p(smollm):
    """Repetition penalty 1.3, no-repeat 2-grams, T = 1.3, top_p = 0.5 on a repeated sentence:
    300 tokens, ' pool' (float64 mass above it 0.4999991) the last one kept."""
    text = "The cat sat on the mat. The cat sat on the"
    ids, logits = smollm.encode_prompt(text), smollm.next_token_logits(text).float()
    params = SamplingParams(repetition_penalty=1.3, no_repeat_ngram_size=2, temperature=1.3, top_p=0.5)
    sampler = Sampler(params, logits.shape[-1], tokenizer=smollm.tokenizer)
    scores = sampler.process(TokenHistory([ids], logits.shape[-1]), logits[None])[0]
    pool = smollm.tokenizer.encode(" pool", add_bos=False)[0]
    assert int(scores.isfinite().sum()) == 300 and bool(scores[pool].isfinite())
