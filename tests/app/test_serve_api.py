"""tokenloom serve over real HTTP on 127.0.0.1: request models, errors, limits, auth, health, metrics.

The first group runs against a server whose model never finishes loading (no model
needed: bodies are checked before the model is asked for); the second against a
tiny random Llama, where every bad request is followed by a good one that must
still get the reference answer.
"""

from __future__ import annotations

import dataclasses
import threading

import httpx
import pytest

from tokenloom.app.serve import BackgroundServer, ServeConfig, create_app
from tokenloom.app.serve.errors import describe
from tokenloom.app.serve.schemas import SAMPLING_FIELDS, ChatRequest, CompletionRequest
from tokenloom.errors import InvalidArgument
from tokenloom.generation.params import SamplingParams


def client(server: BackgroundServer, **headers) -> httpx.Client:
    return httpx.Client(base_url=server.url, trust_env=False, timeout=60, headers=headers)


def assert_error(response: httpx.Response, status: int, param: str | None, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param, error
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error


# -- the request models ---------------------------------------------------------------
def test_sampling_fields_are_the_dataclass_fields_less_the_endpoint_ones():
    declared = [f.name for f in dataclasses.fields(SamplingParams)]
    # every field but json_object (response_format's), some under vLLM's names (guided_json for json_schema)
    assert list(SAMPLING_FIELDS.values()) == [name for name in declared
                                              if name not in ("max_tokens", "logprobs", "json_object")]
    assert SAMPLING_FIELDS["guided_json"] == "json_schema" and SAMPLING_FIELDS["guided_choice"] == "choice"
    for model in (CompletionRequest, ChatRequest):
        assert set(SAMPLING_FIELDS) <= set(model.model_fields)
        assert {"max_tokens", "logprobs"} <= set(model.model_fields)


def test_request_schema_keeps_the_json_shapes_of_the_declarations():
    props = CompletionRequest.model_json_schema()["properties"]
    assert props["stop_token_ids"]["anyOf"][0] == {"type": "array", "items": {"type": "integer"}}
    assert props["logit_bias"]["anyOf"][0] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert {"type": "string"} in props["stop"]["anyOf"]
    assert props["order"]["anyOf"][0]["enum"] == ["tokenloom", "hf", "vllm", "llama.cpp"]


def test_describe_says_a_schema_in_words():
    schema = CompletionRequest.model_json_schema()
    assert describe(schema, schema["properties"]["prompt"]) == (
        "a string, a list of strings, a list of integers or a list of lists of integers")
    assert describe(schema, schema["properties"]["temperature"]) == "a number or null"


@pytest.mark.parametrize("field, value, message", [
    ("port", 70000, "port must be in [0, 65535], got 70000"),
    ("precision", "fp8", "precision must be one of auto, native, float32, bfloat16, got 'fp8'"),
    ("max_queue", 0, "max_queue must be in [1, ∞), got 0"),
    ("api_key", "", "api_key must be a non-empty string"),
])
def test_serve_config_names_the_bad_field(field, value, message):
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("∞", ".")):
        ServeConfig(**{field: value})


# -- a server whose model is still loading ---------------------------------------------
def failing_loader(wait: threading.Event | None = None):
    def load():
        if wait is not None:
            wait.wait()
        raise FileNotFoundError("no model file in this test")
    return load


@pytest.fixture(scope="module")
def loading_server():
    release = threading.Event()
    app = create_app(ServeConfig(max_body_bytes=2048), loader=failing_loader(release))
    with BackgroundServer(app) as server:
        yield server
    release.set()


def test_health_is_503_while_loading_and_endpoints_say_so(loading_server):
    with client(loading_server) as http:
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        body = {"model": ServeConfig().model, "prompt": "Hi"}
        error = assert_error(http.post("/v1/completions", json=body), 503, None, "still loading")
        assert error["type"] == "server_error" and error["code"] == "model_loading"


def test_unknown_field_is_400_naming_it_and_listing_what_is_allowed(loading_server):
    with client(loading_server) as http:
        body = {"model": "m", "prompt": "Hi", "temprature": 0.5}
        assert_error(http.post("/v1/completions", json=body), 400, "temprature", "unknown field", "temperature")
        chat = {"model": "m", "messages": [{"role": "user", "content": "Hi", "mood": "x"}]}
        assert_error(http.post("/v1/chat/completions", json=chat), 400, "messages[0].mood", "role, content, name")
        options = {"model": "m", "prompt": "Hi", "stream_options": {"include_usage": True, "every": 1}}
        assert_error(http.post("/v1/completions", json=options), 400, "stream_options.every", "include_usage")


@pytest.mark.parametrize("body, param, fragment", [
    ({"model": "m", "prompt": "Hi", "temperature": "0.5"}, "temperature", "must be a number or null, got '0.5'"),
    ({"model": "m", "prompt": "Hi", "max_tokens": 2.5}, "max_tokens", "must be an integer or null"),
    ({"model": "m", "prompt": [1, "a"]}, "prompt", "a list of lists of integers, got [1, 'a']"),
    ({"model": "m", "prompt": "Hi", "n": True}, "n", "must be an integer or null, got True"),
    ({"prompt": "Hi"}, "model", "model is required"),
    ({"model": "m", "prompt": "Hi", "stop": [1]}, "stop", "a string, a list of strings or null"),
])
def test_wrong_types_are_400_naming_the_field(loading_server, body, param, fragment):
    with client(loading_server) as http:
        assert_error(http.post("/v1/completions", json=body), 400, param, fragment)


def test_a_body_that_is_not_a_json_object_is_400(loading_server):
    with client(loading_server) as http:
        headers = {"content-type": "application/json"}
        assert_error(http.post("/v1/completions", content=b"{nope", headers=headers), 400, None, "not valid JSON")
        assert_error(http.post("/v1/completions", content=b"[1, 2]", headers=headers), 400, None, "a JSON object")


def test_a_body_past_the_limit_is_413_by_length_and_while_reading(loading_server):
    big = b'{"model": "m", "prompt": "' + b"x" * 4000 + b'"}'
    with client(loading_server) as http:
        error = assert_error(http.post("/v1/completions", content=big, headers={"content-type": "application/json"}),
                             413, None, "2048 bytes")
        assert error["code"] == "request_too_large"

        def chunks():  # no Content-Length: the limit is checked as the body arrives
            for start in range(0, len(big), 512):
                yield big[start:start + 512]
        streamed = http.post("/v1/completions", content=chunks(), headers={"content-type": "application/json"})
        assert_error(streamed, 413, None, "larger than this server's limit of 2048 bytes")
        assert http.get("/health").status_code == 503  # the server is still there


def test_unknown_routes_and_methods_get_openai_errors(loading_server):
    with client(loading_server) as http:
        assert_error(http.get("/v1/engines"), 404, None, "no route '/v1/engines'")
        assert_error(http.get("/v1/completions"), 405, None, "GET is not allowed", "POST")


def test_metrics_are_prometheus_text_with_the_runtime_gauges(loading_server):
    with client(loading_server) as http:
        http.get("/health")
        text = http.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    body = text.text
    assert 'tokenloom_http_requests_total{code="503",endpoint="/health"}' in body
    for name in ("tokenloom_running_sequences 0.0", "tokenloom_waiting_sequences 0.0",
                 "tokenloom_prefix_cache_hits_total 0.0", "tokenloom_time_to_first_token_seconds_bucket",
                 "tokenloom_inter_token_latency_seconds_bucket", "tokenloom_prompt_tokens_total 0.0",
                 "tokenloom_generation_tokens_total 0.0"):
        assert name in body, name


def test_openapi_schema_documents_400_not_422(loading_server):
    with client(loading_server) as http:
        schema = http.get("/openapi.json").json()
    responses = schema["paths"]["/v1/completions"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "429", "503"} <= set(responses) and "422" not in responses
    assert "text/event-stream" in responses["200"]["content"]


def test_a_model_that_fails_to_load_is_reported_by_health_and_the_endpoints():
    app = create_app(ServeConfig(), loader=failing_loader())
    with BackgroundServer(app) as server, client(server) as http:
        with pytest.raises(Exception, match="no model file in this test"):
            server.wait_until_healthy(timeout=10)
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        assert "FileNotFoundError: no model file in this test" in health.json()["detail"]
        error = assert_error(http.post("/tokenize", json={"prompt": "x"}), 503, None, "failed to load")
        assert error["code"] == "model_load_failed"


def test_api_key_is_required_on_the_api_but_not_on_health():
    app = create_app(ServeConfig(api_key="sekrit"), loader=failing_loader())
    with BackgroundServer(app) as server, client(server) as http:
        error = assert_error(http.get("/v1/models"), 401, None, "missing API key")
        assert error["code"] == "invalid_api_key"
        assert_error(http.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401, None, "incorrect")
        assert_error(http.post("/tokenize", json={"prompt": "x"}), 401, None, "Bearer")
        assert http.get("/v1/models", headers={"Authorization": "Bearer sekrit"}).status_code == 200
        assert http.get("/health").json()["status"] in ("loading", "failed")
        assert http.get("/metrics").status_code == 200
