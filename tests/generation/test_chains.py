"""Chains of the user's choosing (SamplingParams.samplers), the presets as named chains,
and the preset defaults (hf: top_k 50; llama.cpp: penalty window 64)."""

from __future__ import annotations

import pytest
import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.chains import PRESETS, check_samplers
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.params import SamplingParams
from tokenloom.generation.sampler import Sampler

ON = dict(temperature=0.7, top_k=5, top_p=0.9, min_p=0.05, typical_p=0.95, repetition_penalty=1.3,
          presence_penalty=0.5, xtc_probability=1.0, dry_multiplier=0.8, dry_sequence_breakers=())


def names(params: SamplingParams, vocab: int = 50) -> list[str]:
    return [p.name for p in Sampler(params, vocab, eos_token_ids=[0]).processors]


def test_a_user_chain_runs_in_the_users_order_like_llama_cpp_samplers():
    chain = ["penalties", "dry", "top_k", "typical_p", "top_p", "min_p", "xtc", "temperature"]
    assert names(SamplingParams(samplers=chain, **ON)) == [
        "repetition_penalty", "presence_penalty", "dry", "top_k", "typical_p", "top_p", "min_p", "xtc",
        "temperature"]
    assert names(SamplingParams(samplers=chain, order="llama.cpp", **ON)) == [
        "penalties", "dry", "top_k", "typical_p", "top_p", "min_p", "xtc", "temperature"]


def test_llama_cpp_spellings_and_a_semicolon_string_are_accepted():
    assert check_samplers("samplers", "top-k;typ_p;temp") == ("top_k", "typical_p", "temperature")
    assert SamplingParams(samplers="top_p, temperature").samplers == ("top_p", "temperature")


@pytest.mark.parametrize("samplers, message", [
    (["top_k", "nucleus"], "samplers: unknown step 'nucleus'; known steps: logit_bias, "),
    (["top_k", "top-k"], "each step at most once, got top_k more than once"),
    (["mirostat"], "mirostat is not a step of the chain; set mirostat=1 or 2"),
    (["penalties", "repetition_penalty"], "'penalties' already stands for"),
    ([], "samplers must be a non-empty list of step names"),
    ([3], "samplers must hold step names (strings), got 3"),
])
def test_bad_chains_say_what_was_wrong_and_what_is_allowed(samplers, message):
    with pytest.raises(InvalidArgument) as error:
        SamplingParams(samplers=samplers)
    assert message in str(error.value)


def test_a_set_option_the_chain_leaves_out_is_an_error_not_a_silent_no_op():
    with pytest.raises(InvalidArgument, match="top_p is set but samplers leaves it out .*add 'top_p'"):
        SamplingParams(samplers=["top_k", "temperature"], top_k=5, top_p=0.9)  # refused when built


def test_hard_bans_go_first_when_the_chain_leaves_them_out():
    params = SamplingParams(samplers=["temperature", "top_k"], logit_bias={1: 2.0}, top_k=3, temperature=0.5)
    assert names(params) == ["logit_bias", "temperature", "top_k"]


def test_greedy_user_chain_keeps_the_steps_before_temperature():
    params = SamplingParams(samplers=["top_k", "temperature", "top_p"], top_k=5, top_p=0.9, temperature=0)
    assert names(params) == ["top_k"]


@pytest.mark.parametrize("order", sorted(PRESETS))
def test_each_preset_is_a_named_chain_of_step_names(order):
    preset = PRESETS[order]
    assert check_samplers("samplers", list(preset.chain)) == preset.chain
    assert names(SamplingParams(samplers=preset.chain, order=order, **ON)) == names(
        SamplingParams(order=order, **ON))


def test_hf_preset_applies_transformers_default_top_k_50_when_top_k_is_unset():
    assert "top_k=50" in Sampler(SamplingParams(order="hf", top_p=0.9), 100).describe()
    assert "top_k" not in names(SamplingParams(order="hf", top_p=0.9, top_k=0), 100)
    assert "top_k" not in names(SamplingParams(order="tokenloom", top_p=0.9), 100)


def test_llama_cpp_preset_penalises_the_last_64_tokens_of_prompt_and_output():
    sampler = Sampler(SamplingParams(order="llama.cpp", presence_penalty=1.0), 10)
    history = TokenHistory([[1] + [2] * 64], 10)  # token 1 is 65 tokens back: outside the window
    scores = sampler.process(history, torch.zeros(1, 10))[0]
    assert scores[1] == 0 and scores[2] == -1.0  # prompt tokens count, as llama-server feeds them
    ours = Sampler(SamplingParams(presence_penalty=1.0), 10).process(history, torch.zeros(1, 10))[0]
    assert ours[2] == 0  # our rule: presence over the output only


def test_penalty_window_needs_llama_cpp_rules():
    with pytest.raises(InvalidArgument, match="penalty_last_n=32 needs llama.cpp's penalty rules"):
        SamplingParams(penalty_last_n=32, repetition_penalty=1.2)
    assert names(SamplingParams(order="llama.cpp", penalty_last_n=0, repetition_penalty=1.2), 10) == []
