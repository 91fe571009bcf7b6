"""SamplingParams: defaults, normalisation, and one clear error per out-of-range field."""

import dataclasses

import pytest

from tokenloom.errors import InvalidArgument
from tokenloom.generation.params import SamplingParams


def test_defaults_are_full_random_sampling_with_openai_names():
    params = SamplingParams()
    assert (params.temperature, params.top_k, params.top_p, params.min_p, params.typical_p) == (1.0, None, 1.0, 0.0, 1.0)
    assert (params.repetition_penalty, params.presence_penalty, params.frequency_penalty) == (1.0, 0.0, 0.0)
    assert (params.max_tokens, params.n, params.order) == (16, 1, "tokenloom")
    assert params.stop == () and params.stop_token_ids == () and params.logit_bias is None
    assert not params.greedy


def test_full_random_equals_the_defaults_and_keeps_non_shaping_fields():
    params = SamplingParams.full_random(seed=3, max_tokens=40)
    assert params == SamplingParams(seed=3, max_tokens=40)


def test_full_random_refuses_a_field_that_reshapes_the_distribution():
    with pytest.raises(InvalidArgument, match="top_p"):
        SamplingParams.full_random(top_p=0.9)


def test_temperature_zero_is_greedy():
    assert SamplingParams(temperature=0).greedy
    assert SamplingParams(temperature=0).temperature == 0.0


def test_top_k_minus_one_means_off_like_vllm():
    assert SamplingParams(top_k=-1).top_k == 0


def test_stop_accepts_a_string_or_a_list_and_stores_a_tuple():
    assert SamplingParams(stop="\n").stop == ("\n",)
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    assert SamplingParams(stop_token_ids=[2, 3]).stop_token_ids == (2, 3)


def test_logit_bias_accepts_json_string_keys():
    assert SamplingParams(logit_bias={"50": -100, 7: 2.5}).logit_bias == {50: -100.0, 7: 2.5}


def test_params_are_frozen_and_hashable_even_with_logit_bias():
    params = SamplingParams(logit_bias={1: 1.0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.top_k = 3
    assert hash(params) == hash(SamplingParams(logit_bias={1: 1.0}))
    assert params == dataclasses.replace(params)


BAD_VALUES = [
    ("temperature", -0.1, "temperature must be in [0, ∞), got -0.1"),
    ("temperature", 1e-7, "temperature must be 0 (greedy) or in [1e-05, ∞), got 1e-07"),
    ("temperature", float("nan"), "temperature must be a number"),
    ("temperature", float("inf"), "temperature must be in [0, ∞), got inf"),
    ("temperature", "hot", "temperature must be a number"),
    ("top_k", -2, "top_k must be in [0, ∞) (0 or -1 = off; null = the preset's default), got -2"),
    ("top_k", 2.5, "top_k must be an integer"),
    ("top_k", True, "top_k must be an integer"),
    ("top_p", 1.5, "top_p must be in (0, 1], got 1.5"),
    ("top_p", 0.0, "top_p must be in (0, 1], got 0"),
    ("min_p", -0.01, "min_p must be in [0, 1], got -0.01"),
    ("min_p", 1.01, "min_p must be in [0, 1], got 1.01"),
    ("typical_p", 0.0, "typical_p must be in (0, 1], got 0"),
    ("typical_p", 2.0, "typical_p must be in (0, 1], got 2"),
    ("repetition_penalty", 0.0, "repetition_penalty must be in (0, ∞), got 0"),
    ("repetition_penalty", -1.0, "repetition_penalty must be in (0, ∞), got -1"),
    ("presence_penalty", 2.5, "presence_penalty must be in [-2, 2], got 2.5"),
    ("frequency_penalty", -3, "frequency_penalty must be in [-2, 2], got -3"),
    ("no_repeat_ngram_size", -1, "no_repeat_ngram_size must be in [0, ∞), got -1"),
    ("logit_bias", {5: 101}, "logit_bias[5] must be in [-100, 100], got 101"),
    ("logit_bias", {-1: 1.0}, "logit_bias token id must be in [0, ∞), got -1"),
    ("logit_bias", [1, 2], "logit_bias must map token ids"),
    ("min_tokens", -1, "min_tokens must be in [0, 16] (at most max_tokens), got -1"),
    ("min_tokens", 17, "min_tokens must be in [0, 16] (at most max_tokens), got 17"),
    ("max_tokens", 0, "max_tokens must be in [1, ∞), got 0"),
    ("stop", "", "stop must be a non-empty string"),
    ("stop", ["ok", 3], "stop must be a non-empty string"),
    ("stop_token_ids", [1, -2], "stop_token_ids[1] must be in [0, ∞), got -2"),
    ("seed", -1, "seed must be in [0, 9223372036854775807], got -1"),
    ("n", 0, "n must be in [1, ∞), got 0"),
    ("logprobs", 21, "logprobs must be in [0, 20], got 21"),
    ("logprobs", -1, "logprobs must be in [0, 20], got -1"),
    ("order", "openai", "order must be one of tokenloom, hf, vllm, llama.cpp, got 'openai'"),
]


@pytest.mark.parametrize("field,value,message", BAD_VALUES, ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES])
def test_out_of_range_field_names_field_value_and_allowed_range(field, value, message):
    with pytest.raises(InvalidArgument) as error:
        SamplingParams(**{field: value})
    assert str(error.value).startswith(message)
    assert isinstance(error.value, ValueError)


def test_boundary_values_are_accepted():
    params = SamplingParams(temperature=1e-5, top_p=1.0, min_p=1.0, typical_p=1.0, presence_penalty=-2,
                            frequency_penalty=2, logprobs=20, seed=0, min_tokens=16)
    assert params.top_p == 1.0 and params.logprobs == 20 and params.presence_penalty == -2.0
