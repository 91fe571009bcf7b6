"""XTC, top-nσ, dynamic temperature, mirostat v1/v2 and llama.cpp's penalties against
llama.cpp's own samplers (llama-cpp-python 0.3.36) on real SmolLM2 logits.

What is compared:
- top-nσ, dynamic temperature, penalties: deterministic; the (V,) logits after the step
  must be bitwise equal (torch.equal; removed tokens -inf on both sides).
- XTC: its only randomness is the coin (u ≤ probability). With probability 1 the coin
  always fires on both sides, and the kept sets must be equal; the coin's rate is
  checked on its own against `probability`.
- mirostat: the kept set (the truncation) is deterministic given μ, and μ's update is
  deterministic given the chosen token. llama.cpp draws with its own mt19937, so its
  chosen token is fed to our `accept`: 20 steps on, the kept sets must still be equal
  at every step, which pins μ's float32 trajectory.
"""

from __future__ import annotations

import pytest
import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.llamacpp_samplers import XTC, DynamicTemperature, Mirostat, TopNSigma
from tokenloom.generation.params import SamplingParams
from tokenloom.generation.sampler import Sampler

V = 49152


def rows(real_logits):
    """Each prompt's logits as they are, and cut to their best 40 (as after top_k = 40), where
    several tokens are likely enough for XTC to fire."""
    cut = [logits.masked_fill(logits < logits.topk(40).values[-1], float("-inf")) for _, logits in real_logits]
    return [logits for _, logits in real_logits] + cut


def kept(scores: torch.Tensor) -> set[int]:
    return set(torch.nonzero(scores > float("-inf")).squeeze(-1).tolist())


def fresh(batch: int = 1) -> TokenHistory:
    return TokenHistory([[]] * batch, V)


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 3.0])
def test_top_n_sigma_equals_llama_cpp_bitwise(llama_oracle, real_logits, n):
    for logits in rows(real_logits):
        sampler = llama_oracle.module.llama_sampler_init_top_n_sigma(n)
        theirs = llama_oracle.logits_after(sampler, logits)
        llama_oracle.module.llama_sampler_free(sampler)
        assert torch.equal(TopNSigma(n)(fresh(), logits[None])[0], theirs)


@pytest.mark.parametrize("temperature, delta, exponent", [(1.0, 0.5, 1.0), (0.8, 0.3, 2.0), (1.2, 1.0, 0.5),
                                                           (0.7, 0.7, 1.0)])
def test_dynamic_temperature_equals_llama_cpp_bitwise(llama_oracle, real_logits, temperature, delta, exponent):
    for logits in rows(real_logits):
        sampler = llama_oracle.module.llama_sampler_init_temp_ext(temperature, delta, exponent)
        theirs = llama_oracle.logits_after(sampler, logits)
        llama_oracle.module.llama_sampler_free(sampler)
        ours = DynamicTemperature(temperature, delta, exponent)(fresh(), logits[None])[0]
        assert torch.equal(ours, theirs)
        assert not torch.equal(ours, logits / temperature)  # the entropy moved T


@pytest.mark.parametrize("threshold, min_keep", [(0.05, 0), (0.1, 0), (0.1, 3), (0.05, 2)])
def test_xtc_keeps_what_llama_cpp_keeps_when_the_coin_fires(llama_oracle, real_logits, threshold, min_keep):
    fired = 0
    for logits in rows(real_logits):
        sampler = llama_oracle.module.llama_sampler_init_xtc(1.0, threshold, min_keep, 1)
        ids, _, _, _ = llama_oracle.apply(sampler, logits)
        llama_oracle.module.llama_sampler_free(sampler)
        ours = kept(XTC(1.0, threshold, min_keep)(fresh(), logits[None])[0])
        assert ours == set(ids.tolist())
        fired += len(ours) < int(logits.isfinite().sum())
    assert fired >= 2  # the top choices were excluded somewhere


def test_xtc_coin_fires_with_its_probability_from_the_row_generator():
    logits = torch.tensor([[2.0, 2.0, 1.0, 0.0]])  # P ≈ [0.42, 0.42, 0.16, 0.06]: 0.1 → two top choices
    xtc, history = XTC(0.3, 0.1), fresh()
    history.generators = [torch.Generator().manual_seed(5)]
    fires = sum(torch.isinf(xtc(history, logits)[0, 0]).item() for _ in range(4000))
    assert abs(fires / 4000 - 0.3) < 4 * (0.3 * 0.7 / 4000) ** 0.5
    history.generators = [torch.Generator().manual_seed(5)]
    again = sum(torch.isinf(xtc(history, logits)[0, 0]).item() for _ in range(4000))
    assert again == fires  # the same seed, the same coins


def test_xtc_docstring_example():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert kept(XTC(1.0, 0.1)(fresh(), logits)[0]) == {2, 3}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("tau, eta, temperature", [(5.0, 0.1, 1.0), (8.0, 0.5, 1.3)])
def test_mirostat_truncates_as_llama_cpp_step_by_step(llama_oracle, real_logits, version, tau, eta,
                                                      temperature):
    lib = llama_oracle.module
    theirs = lib.llama_sampler_init_mirostat(V, 7, tau, eta, 100) if version == 1 \
        else lib.llama_sampler_init_mirostat_v2(7, tau, eta)
    ours, history, sizes = Mirostat(version, tau, eta, V), fresh(), []
    try:
        for step in range(20):
            logits = real_logits[step % len(real_logits)][1] / temperature
            ids, _, _, selected = llama_oracle.apply(theirs, logits)
            scores = ours(history, logits[None])
            assert kept(scores[0]) == set(ids.tolist()), step
            ours.accept(history, scores, torch.tensor([int(ids[selected])]))
            sizes.append(len(ids))
    finally:
        lib.llama_sampler_free(theirs)
    assert len(set(sizes)) > 3  # μ moved the cut


def test_mirostat_keeps_mu_per_sequence_and_starts_at_two_tau():
    sampler = Sampler(SamplingParams(mirostat=2, mirostat_tau=3.0, seed=0), vocab_size=6)
    history = fresh(2)
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    generators = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    sampler(history, logits, generators)
    mu = [float(state["mirostat_mu"]) for state in history.states]
    assert mu[0] != mu[1] and all(m != 6.0 for m in mu)
    single = fresh(1)  # the second row alone, same logits and seed: the same μ (rows do not share state)
    Sampler(SamplingParams(mirostat=2, mirostat_tau=3.0), vocab_size=6)(
        single, logits[1:], [torch.Generator().manual_seed(2)])
    assert float(single.states[0]["mirostat_mu"]) == mu[1]


@pytest.mark.parametrize("repeat, frequency, presence", [(1.3, 0.0, 0.0), (1.1, 0.5, 0.3), (1.0, 0.7, -0.4),
                                                         (0.8, -0.9, 2.0)])
@pytest.mark.parametrize("last_n", [64, 16, -1])
def test_llama_cpp_preset_penalties_equal_llama_cpp_over_prompt_and_output(llama_oracle, real_logits, repeat,
                                                                           frequency, presence, last_n):
    params = SamplingParams(order="llama.cpp", repetition_penalty=repeat, frequency_penalty=frequency,
                            presence_penalty=presence, penalty_last_n=None if last_n == 64 else last_n)
    sampler = Sampler(params, V)
    assert [p.name for p in sampler.processors] == ["penalties"]
    for ids, logits in real_logits:
        oracle = llama_oracle.penalties(8192 if last_n == -1 else last_n, repeat, frequency, presence)
        for token in ids:  # llama-server accepts the prompt into its sampler, then each output token
            llama_oracle.module.llama_sampler_accept(oracle, token)
        theirs = llama_oracle.logits_after(oracle, logits)
        llama_oracle.module.llama_sampler_free(oracle)
        history = TokenHistory([ids[: len(ids) // 2]], V)
        for token in ids[len(ids) // 2:]:
            history.append(torch.tensor([token]))
        assert torch.equal(sampler.process(history, logits[None])[0], theirs)


def test_mirostat_refuses_filters_it_would_not_run():
    with pytest.raises(InvalidArgument, match="mirostat=1 replaces the chain .* top_p would not run"):
        SamplingParams(mirostat=1, top_p=0.9)
    with pytest.raises(InvalidArgument, match="dynatemp_range must be 0"):
        SamplingParams(mirostat=2, dynatemp_range=0.5)
    names = [p.name for p in Sampler(SamplingParams(mirostat=2, temperature=0.7, logit_bias={1: 1.0}), V).processors]
    assert names == ["logit_bias", "temperature", "mirostat"]
