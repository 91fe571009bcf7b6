"""Epsilon and eta cutoffs against transformers' EpsilonLogitsWarper and EtaLogitsWarper:
the processed scores must be bitwise equal (same float32 arithmetic), on real SmolLM2
logits and on random batches, with and without min_keep."""

from __future__ import annotations

import pytest
import torch
from transformers.generation import logits_process as hf

from tokenloom.errors import InvalidArgument
from tokenloom.generation.cutoffs import EpsilonCutoff, EtaCutoff
from tokenloom.generation.history import TokenHistory


def history(logits: torch.Tensor) -> TokenHistory:
    return TokenHistory([[]] * logits.shape[0], logits.shape[-1])


def batches(real_logits):
    real = torch.stack([logits for _, logits in real_logits])  # (8, V)
    noise = torch.randn(4, 500, generator=torch.Generator().manual_seed(0)) * 2.5  # (4, 500)
    return [real, real / 1.5, noise]


@pytest.mark.parametrize("epsilon", [3e-4, 1e-3, 0.02, 0.3])
@pytest.mark.parametrize("min_keep", [0, 1, 5])
def test_epsilon_cutoff_equals_transformers(real_logits, epsilon, min_keep):
    for logits in batches(real_logits):
        ids = torch.zeros(logits.shape[0], 1, dtype=torch.long)
        theirs = hf.EpsilonLogitsWarper(epsilon, min_tokens_to_keep=max(min_keep, 1))(ids, logits)
        ours = EpsilonCutoff(epsilon, min_keep)(history(logits), logits)
        assert torch.equal(ours, theirs)
        assert ours.isfinite().sum(-1).min() >= max(min_keep, 1)


@pytest.mark.parametrize("eta", [3e-4, 2e-3, 0.02, 0.3])
@pytest.mark.parametrize("min_keep", [0, 5])
def test_eta_cutoff_equals_transformers(real_logits, eta, min_keep):
    for logits in batches(real_logits):
        ids = torch.zeros(logits.shape[0], 1, dtype=torch.long)
        theirs = hf.EtaLogitsWarper(eta, min_tokens_to_keep=max(min_keep, 1))(ids, logits)
        assert torch.equal(EtaCutoff(eta, min_keep)(history(logits), logits), theirs)


def test_epsilon_docstring_example_and_eta_floor_falls_with_entropy():
    logits = torch.tensor([[0.6, 0.3, 0.0999, 0.0001]]).log()
    assert EpsilonCutoff(0.001)(history(logits), logits).isfinite().tolist() == [[True, True, True, False]]
    peaked, flat = torch.tensor([[4.0, 0.0, 0.0, 0.0]]), torch.tensor([[0.1, 0.0, 0.0, 0.0]])
    # √0.5·exp(−H): a peaked row (low H) keeps a high floor, a flat row (H ≈ ln 4) a low one
    assert EtaCutoff(0.5)(history(peaked), peaked).isfinite().sum() == 1
    assert EtaCutoff(0.5)(history(flat), flat).isfinite().sum() == 4


@pytest.mark.parametrize("make, message", [
    (lambda: EpsilonCutoff(0.0), "epsilon_cutoff must be in (0, 1)"),
    (lambda: EpsilonCutoff(1.0), "epsilon_cutoff must be in (0, 1)"),
    (lambda: EtaCutoff(-0.1), "eta_cutoff must be in (0, 1)"),
    (lambda: EtaCutoff(0.1, min_keep=-1), "min_keep must be in [0, ∞)"),
])
def test_invalid_cutoffs_say_what_is_allowed(make, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        make()
