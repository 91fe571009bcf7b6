"""Bad requests against a real server on a tiny random Llama (context 128): each is refused
with OpenAI's error JSON naming the parameter, and the next good request still gets the
answer the library gives for it. Also /tokenize, /detokenize and prompt scoring (echo).
"""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
import torch

import tokenloom as tl
from tokenloom.app.serve import BackgroundServer, ServeConfig, create_app

pytestmark = pytest.mark.slow

GOOD = {"prompt": "The cat sat on the", "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    from tokenloom.generation.scheduler import RuntimeLimits

    lm = tl.load(str(tiny_llama_dir), limits=RuntimeLimits(max_running=2, max_queue=2))
    app = create_app(ServeConfig(model=str(tiny_llama_dir)), loader=lambda: lm)
    with BackgroundServer(app) as server:
        server.wait_until_healthy()
        with httpx.Client(base_url=server.url, trust_env=False, timeout=60) as http:
            yield SimpleNamespace(lm=lm, name=str(tiny_llama_dir), http=http)


@pytest.fixture(scope="module")
def reference(tiny) -> str:
    """The library's own greedy continuation of GOOD's prompt."""
    ids = tiny.lm.tokenizer.encode(GOOD["prompt"])
    params = tl.SamplingParams(temperature=0, max_tokens=GOOD["max_tokens"])
    return tiny.lm.scheduler.submit(ids, params).result().text


def post(tiny, path: str, body: dict) -> httpx.Response:
    return tiny.http.post(path, json={"model": tiny.name, **body})


def chat(content: str = "Hi", **fields) -> dict:
    return {"messages": [{"role": "user", "content": content}], **fields}


LONG = "The cat sat on the mat. " * 40  # far more than 128 tokens
BAD = [
    ("/v1/completions", {**GOOD, "top_p": 1.5}, "top_p", "top_p must be in (0, 1], got 1.5"),
    ("/v1/completions", {**GOOD, "temperature": -1}, "temperature", "temperature must be"),
    ("/v1/completions", {**GOOD, "min_tokens": 9}, "min_tokens", "at most max_tokens"),
    ("/v1/completions", {**GOOD, "logprobs": 21}, "logprobs", "logprobs must be in [0, 20], got 21"),
    ("/v1/completions", {**GOOD, "seed": -1}, "seed", "seed must be in [0,"),
    ("/v1/completions", {**GOOD, "n": 0}, "n", "n must be in [1,"),
    ("/v1/completions", {**GOOD, "logit_bias": {"1000000": 5}}, "logit_bias", "is not a token id"),
    ("/v1/completions", {**GOOD, "logit_bias": {"1": 500}}, "logit_bias", "[-100, 100], got 500"),
    ("/v1/completions", {**GOOD, "stop_token_ids": [1000000]}, "stop_token_ids", "is not a token id"),
    ("/v1/completions", {**GOOD, "prompt": ""}, "prompt", "prompt is empty"),
    ("/v1/completions", {**GOOD, "prompt": [[5], []]}, "prompt", "prompt[1] is an empty list"),
    ("/v1/completions", {**GOOD, "prompt": [5, 1000000]}, "prompt", "prompt[1] = 1000000 is not a token id"),
    ("/v1/completions", {**GOOD, "prompt": LONG}, "prompt", "maximum context length is 128 tokens"),
    ("/v1/completions", {**GOOD, "max_tokens": 200}, "max_tokens", "However, you requested"),
    ("/v1/completions", {**GOOD, "max_tokens": 0}, "max_tokens", "only with echo"),
    ("/v1/completions", {**GOOD, "suffix": "!"}, "suffix", "suffix is not supported"),
    ("/v1/completions", {**GOOD, "best_of": 3}, "best_of", "best_of must be 1 or equal to n"),
    ("/v1/completions", {**GOOD, "n": 3, "prompt": ["a", "b"]}, "n", "at most 4 sequences"),
    ("/v1/completions", {**GOOD, "order": "random"}, "order", "one of 'tokenloom'"),
    ("/v1/completions", {**GOOD, "dry_base": 0.5}, "dry_base", "dry_base must be in [1, ∞), got 0.5"),
    ("/v1/completions", {**GOOD, "samplers": ["top_k", "nucleus"]}, "samplers", "unknown step 'nucleus'"),
    ("/v1/completions", {**GOOD, "samplers": "top_k;temp", "top_p": 0.5}, "top_p",
     "top_p is set but samplers leaves it out"),
    ("/v1/completions", {**GOOD, "mirostat": 3}, "mirostat", "mirostat must be in [0, 2], got 3"),
    ("/v1/completions", {**GOOD, "dry_sequence_breakers": ["\n", ""]}, "dry_sequence_breakers",
     "list of non-empty strings"),
    ("/v1/completions", {**GOOD, "stream_options": {"include_usage": True}}, "stream_options", "stream is true"),
    ("/v1/chat/completions", chat(tools=[{"type": "function"}]), "tools", "is not supported"),
    ("/v1/chat/completions", chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}),
     "response_format", "with the schema under 'schema'"),
    ("/v1/chat/completions", chat(response_format={"type": "json_object"}, guided_regex="[0-9]+"),
     "response_format", "give one"),
    ("/v1/chat/completions", chat(response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "array", "uniqueItems": True}}}), "response_format", "uniqueItems"),
    ("/v1/completions", {**GOOD, "guided_json": {"type": "object", "not": {}}}, "guided_json",
     'Unimplemented keys: ["not"]'),
    ("/v1/completions", {**GOOD, "guided_regex": "a(b"}, "guided_regex", "unclosed group"),
    ("/v1/completions", {**GOOD, "guided_choice": []}, "guided_choice", "non-empty list"),
    ("/v1/completions", {**GOOD, "guided_regex": "a", "guided_choice": ["a"]}, None, "at most one of"),
    ("/v1/chat/completions", chat(top_logprobs=2), "top_logprobs", "needs logprobs: true"),
    ("/v1/chat/completions", chat(logprobs=True, top_logprobs=21), "top_logprobs", "top_logprobs must be in [0, 20]"),
    ("/v1/chat/completions", chat(max_tokens=3, max_completion_tokens=4), "max_completion_tokens", "disagree"),
    ("/v1/chat/completions", chat(max_completion_tokens=0), "max_completion_tokens", "max_completion_tokens must"),
    ("/v1/chat/completions", chat(max_completion_tokens=500), "max_completion_tokens", "maximum context length"),
    ("/v1/chat/completions", chat(LONG), "messages", "maximum context length is 128 tokens"),
    ("/v1/chat/completions", {"messages": []}, "messages", "at least 1 item"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content[0].type", "'text'"),
    ("/detokenize", {"tokens": [3, -1]}, "tokens", "tokens[1] = -1 is not a token id"),
    ("/tokenize", {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "messages", "exactly one"),
]


@pytest.mark.parametrize("path, body, param, fragment", BAD, ids=[f"{b[0]}:{b[2]}" for b in BAD])
def test_bad_request_is_400_naming_the_param_and_the_next_good_one_is_right(tiny, reference, path, body, param,
                                                                             fragment):
    response = post(tiny, path, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert fragment in error["message"], error["message"]
    good = post(tiny, "/v1/completions", GOOD)
    assert good.status_code == 200, good.text
    assert good.json()["choices"][0]["text"] == reference


def test_dry_fields_in_the_body_reach_the_sampler_as_llama_server_names_them(tiny):
    fields = {"dry_multiplier": 2.0, "dry_base": 1.75, "dry_allowed_length": 1, "dry_penalty_last_n": 64,
              "dry_sequence_breakers": ["\n", "."]}
    body = {**GOOD, "prompt": "The cat sat on the mat. The cat sat on the", "max_tokens": 8}
    got = post(tiny, "/v1/completions", {**body, **fields}).json()["choices"][0]["text"]
    ids = tiny.lm.tokenizer.encode(body["prompt"])
    params = tl.SamplingParams(temperature=0, max_tokens=8, **fields)
    assert got == tiny.lm.scheduler.submit(ids, params).result().text


def test_an_unknown_model_is_404_and_the_next_good_request_is_right(tiny, reference):
    response = tiny.http.post("/v1/completions", json={**GOOD, "model": "gpt-4"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found" and response.json()["error"]["param"] == "model"
    assert post(tiny, "/v1/completions", GOOD).json()["choices"][0]["text"] == reference


def test_tokenize_and_detokenize_round_trip_through_the_tokenizer(tiny):
    tokens = post(tiny, "/tokenize", {"prompt": "The cat sat"}).json()
    assert tokens["tokens"] == tiny.lm.tokenizer.encode("The cat sat")
    assert tokens["count"] == len(tokens["tokens"]) and tokens["max_model_len"] == 128
    assert post(tiny, "/detokenize", {"tokens": tokens["tokens"]}).json() == {"prompt": "The cat sat"}
    messages = [{"role": "user", "content": "Hi"}]
    rendered = tiny.lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    assert post(tiny, "/tokenize", {"messages": messages}).json()["tokens"] == tiny.lm.tokenizer.encode(rendered)


def test_echo_with_max_tokens_0_scores_the_prompt_by_teacher_forcing(tiny):
    body = {"prompt": "The cat sat on the mat", "max_tokens": 0, "echo": True, "logprobs": 2}
    choice = post(tiny, "/v1/completions", body).json()["choices"][0]
    assert choice["text"] == body["prompt"] and choice["finish_reason"] == "length"
    logprobs = choice["logprobs"]
    ids = tiny.lm.tokenizer.encode(body["prompt"])
    expected = torch.log_softmax(tiny.lm.logits(ids), dim=-1)[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert logprobs["token_logprobs"][1:] == pytest.approx(expected.tolist(), abs=1e-4)
    assert "".join(logprobs["tokens"]) == body["prompt"]
    assert all(len(top) in (2, 3) for top in logprobs["top_logprobs"][1:])
    assert logprobs["text_offset"][:2] == [0, len(logprobs["tokens"][0])]


def test_echo_puts_the_prompt_before_the_generated_text(tiny, reference):
    choice = post(tiny, "/v1/completions", {**GOOD, "echo": True}).json()["choices"][0]
    assert choice["text"] == GOOD["prompt"] + reference
