"""typical_p's stopping rule: ours (and Hugging Face's) keeps the prefix whose mass reaches p,
llama.cpp's the prefix whose mass exceeds p; the two differ on flat rows."""

from __future__ import annotations

import pytest
import torch

from tokenloom.generation.history import TokenHistory
from tokenloom.generation.llamacpp_samplers import LlamaTypical
from tokenloom.generation.params import SamplingParams
from tokenloom.generation.processors import Typical
from tokenloom.generation.sampler import Sampler


def kept(processor, logits) -> int:
    return int(processor(TokenHistory([[]], logits.shape[-1]), logits).isfinite().sum())


def test_a_flat_row_keeps_two_when_reaching_and_three_when_exceeding():
    flat = torch.zeros(1, 4)  # mass 0.25 each: two reach 0.5, three exceed it
    assert kept(Typical(0.5, stop="reaches"), flat) == 2
    assert kept(Typical(0.5, stop="exceeds"), flat) == 3
    assert kept(LlamaTypical(0.5), flat) == 3


@pytest.mark.parametrize("order, count", [("tokenloom", 2), ("hf", 4), ("llama.cpp", 3)])
def test_each_preset_applies_its_own_rule(order, count):
    flat = torch.zeros(1, 4)  # hf also keeps the whole tie at the boundary
    sampler = Sampler(SamplingParams(order=order, typical_p=0.5, top_k=0), 4)
    assert kept(lambda h, x: sampler.process(h, x), flat) == count


def test_min_keep_holds_for_typical():
    logits = torch.tensor([[5.0, 0.0, 0.0, 0.0, 0.0]])
    assert kept(Typical(0.1, min_keep=3), logits) == 3


def test_typical_under_llama_cpp_keeps_what_llama_cpp_keeps(llama_oracle, real_logits):
    """The llama.cpp preset's typical step follows llama.cpp's float32 arithmetic: equal kept sets."""
    for p in (0.3, 0.6, 0.9, 0.95):
        for _, logits in real_logits:
            sampler = llama_oracle.module.llama_sampler_init_typical(p, 0)
            ids, _, _, _ = llama_oracle.apply(sampler, logits)
            llama_oracle.module.llama_sampler_free(sampler)
            ours = LlamaTypical(p)(TokenHistory([[]], logits.shape[-1]), logits[None])[0]
            assert set(torch.nonzero(ours.isfinite()).squeeze(-1).tolist()) == set(ids.tolist()), p
