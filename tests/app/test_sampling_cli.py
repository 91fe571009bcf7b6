"""The CLI's sampling flags come from SamplingParams' declarations: one flag per field,
help and range from the declaration, parsed into the library's own SamplingParams."""

from __future__ import annotations

import json

import pytest
import typer

from tokenloom.app.sampling_cli import sampling_parameters, sampling_params
from tokenloom.generation.options import declared_fields
from tokenloom.generation.params import SamplingParams


def test_every_declared_field_is_a_flag_with_its_declared_help():
    flags = {p.name: p for p in sampling_parameters()}
    assert set(flags) == {f.name for f, _ in declared_fields(SamplingParams)}
    for field, declared in declared_fields(SamplingParams):
        option = flags[field.name].annotation.__metadata__[0]
        assert option.help.startswith(declared.help) and flags[field.name].default is None


def test_flags_the_cli_lacked_before_parse_into_sampling_params():
    params = sampling_params({"logit_bias": ["5=-100", "7=2.5"], "stop_token_ids": [3, 4], "logprobs": 2,
                              "ignore_eos": True, "samplers": "top_k;temp", "top_k": 3})
    assert params.logit_bias == {5: -100.0, 7: 2.5} and params.stop_token_ids == (3, 4)
    assert params.logprobs == 2 and params.ignore_eos and params.samplers == ("top_k", "temperature")
    assert sampling_params({}).max_tokens == 64  # the CLI's own default, said in its help


def test_a_malformed_logit_bias_says_the_expected_shape():
    with pytest.raises(typer.BadParameter, match="--logit-bias takes ID=BIAS"):
        sampling_params({"logit_bias": ["5:-100"]})


@pytest.mark.slow
def test_generate_takes_the_new_flags_end_to_end(tiny_llama_dir):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tokenloom", "generate", "The cat", "--model", str(tiny_llama_dir),
         "--temperature", "0", "--max-tokens", "5", "--ignore-eos", "--logprobs", "2", "--logit-bias", "0=-100",
         "--samplers", "penalties;top_k;temperature", "--repetition-penalty", "1.2", "--json"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["completion_tokens"] == 5 and len(out["logprobs"]) == 5 and len(out["logprobs"][0]["top"]) == 2
