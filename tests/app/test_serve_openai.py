"""The real `openai` client against `tokenloom serve` on 127.0.0.1, serving SmolLM2-135M-Instruct.

The library is the oracle: what the server answers must be what the runtime gives
for the same prompt and SamplingParams, whole or streamed.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest
import torch

import tokenloom as tl

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"  # the conftest's `served` fixture runs it


def library(lm, prompt: str, **fields):
    """The runtime's own completion of `prompt`: the oracle."""
    params = tl.SamplingParams(**fields)
    return lm.scheduler.submit(lm.tokenizer.encode(prompt), params).result()


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_models_lists_the_served_model_with_its_context(served):
    models = served.client.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert models[0].model_extra["max_model_len"] == served.lm.config.max_seq_len


def test_greedy_completion_is_the_library_completion(served):
    out = served.client.completions.create(model=MODEL, prompt="The cat sat on the", max_tokens=6, temperature=0)
    expected = library(served.lm, "The cat sat on the", max_tokens=6, temperature=0)
    assert out.choices[0].text == expected.text and out.choices[0].finish_reason == "length"
    prompt_tokens = len(served.lm.tokenizer.encode("The cat sat on the"))
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (prompt_tokens, 6)
    assert out.object == "text_completion" and out.model == MODEL


def test_chat_renders_the_template_and_replies_as_the_library_does(served):
    messages = [{"role": "user", "content": "Say hello."}]
    out = served.client.chat.completions.create(model=MODEL, messages=messages, max_completion_tokens=8,
                                                temperature=0)
    prompt = served.lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    expected = library(served.lm, prompt, max_tokens=8, temperature=0)
    assert out.choices[0].message.content == expected.text and out.choices[0].message.role == "assistant"
    assert out.choices[0].finish_reason == ("length" if expected.finish_reason == "length" else "stop")
    assert out.usage.prompt_tokens == len(served.lm.tokenizer.encode(prompt))


def test_streamed_chunks_concatenate_to_the_whole_text_for_the_same_seed(served):
    fields = dict(model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0.9, seed=7)
    whole = served.client.completions.create(**fields)
    chunks = list(served.client.completions.create(**fields, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_streamed_chat_starts_with_the_role_and_matches_the_whole_reply(served):
    fields = dict(model=MODEL, messages=[{"role": "user", "content": "Name a color."}], max_completion_tokens=6,
                  temperature=0.7, seed=3)
    whole = served.client.chat.completions.create(**fields)
    chunks = list(served.client.chat.completions.create(**fields, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_n_choices_are_prompt_major_and_sample_j_draws_with_seed_plus_j(served):
    greedy = served.client.completions.create(model=MODEL, prompt=["The sky is", "My dog"], n=2, max_tokens=5,
                                              temperature=0)
    texts = [c.text for c in greedy.choices]
    assert [c.index for c in greedy.choices] == [0, 1, 2, 3]
    assert texts[0] == texts[1] and texts[2] == texts[3] and texts[0] != texts[2]
    fields = dict(model=MODEL, prompt="The sky is", n=2, max_tokens=5, temperature=1.0)
    first = served.client.completions.create(seed=11, **fields)
    again = served.client.completions.create(seed=11, **fields)
    shifted = served.client.completions.create(seed=12, **fields)
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert first.choices[0].text != first.choices[1].text
    assert first.choices[1].text == shifted.choices[0].text  # sample 1 of seed 11 draws with seed 12
    assert first.usage.prompt_tokens == len(served.lm.tokenizer.encode("The sky is"))  # once per prompt
    if all(c.finish_reason == "length" for c in first.choices):
        assert first.usage.completion_tokens == 10


def test_completion_logprobs_are_the_models_own_by_teacher_forcing(served):
    out = served.client.completions.create(model=MODEL, prompt="The cat sat on the", max_tokens=4, temperature=0,
                                           logprobs=3)
    logprobs = out.choices[0].logprobs
    assert "".join(logprobs.tokens) == out.choices[0].text
    prompt_ids = served.lm.tokenizer.encode("The cat sat on the")
    # each token by itself ("\n" then "\n" stays two tokens, where the joined text encodes as one "\n\n")
    pieces = [served.lm.tokenizer.encode(token) for token in logprobs.tokens]
    assert all(len(p) == 1 for p in pieces), pieces
    generated = [p[0] for p in pieces]
    ids = prompt_ids + generated
    rows = torch.log_softmax(served.lm.logits(ids), dim=-1)[len(prompt_ids) - 1:-1]  # (4, V)
    expected = rows.gather(1, torch.tensor(generated)[:, None])[:, 0]
    # decode steps and one teacher-forced pass round differently in native precision; a wrong row is nats off
    assert logprobs.token_logprobs == pytest.approx(expected.tolist(), abs=0.25)
    for token, value, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert token in top and len(top) <= 4
        assert value == pytest.approx(max(top.values()))  # greedy: the chosen token is the most likely


def test_chat_logprobs_list_exactly_top_logprobs_alternatives(served):
    out = served.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                max_completion_tokens=3, temperature=0, logprobs=True, top_logprobs=2)
    content = out.choices[0].logprobs.content
    assert "".join(t.token for t in content) == out.choices[0].message.content
    for entry in content:
        assert len(entry.top_logprobs) == 2 and entry.bytes == list(entry.token.encode())
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob)


def test_a_stop_string_across_a_token_boundary_ends_the_text_before_it(served):
    prompt = "The cat sat on the"
    free = served.client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0, logprobs=0)
    tokens, text = free.choices[0].logprobs.tokens, free.choices[0].text
    stop = tokens[1][-1] + tokens[2][:2]  # the end of one token and the start of the next
    assert text.find(stop) == len(tokens[0]) + len(tokens[1]) - 1
    fields = dict(model=MODEL, prompt=prompt, max_tokens=8, temperature=0, stop=[stop])
    cut = served.client.completions.create(**fields)
    assert cut.choices[0].text == text[: text.find(stop)]
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].model_extra["stop_reason"] == stop
    streamed = [c.choices[0].text for c in served.client.completions.create(**fields, stream=True)]
    assert "".join(streamed) == cut.choices[0].text


def test_a_character_split_across_tokens_is_never_broken_inside_a_chunk(served):
    fields = dict(model=MODEL, prompt="🍕🍕🍕🍕", max_tokens=6, temperature=0, logprobs=0)
    whole = served.client.completions.create(**fields).choices[0].text
    chunks = [c.choices[0] for c in served.client.completions.create(**fields, stream=True)]
    texts = [c.text for c in chunks if c.text]
    assert "🍕" in whole and "".join(texts) == whole
    assert all("\ufffd" not in t for t in texts)
    assert sum(len(c.logprobs.tokens) for c in chunks if c.logprobs) > len(texts)  # some tokens released nothing


def test_bad_requests_raise_openai_errors_and_the_server_keeps_answering(served):
    with pytest.raises(openai.BadRequestError) as bad:
        served.client.completions.create(model=MODEL, prompt="Hi", max_tokens=2, top_p=1.5)
    assert bad.value.body["param"] == "top_p" and "(0, 1]" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as unknown:
        served.client.completions.create(model=MODEL, prompt="Hi", max_tokens=2, extra_body={"temprature": 1})
    assert unknown.value.body["param"] == "temprature"
    with pytest.raises(openai.NotFoundError):
        served.client.completions.create(model="gpt-4o", prompt="Hi", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as long:
        served.client.completions.create(model=MODEL, prompt="Hi", max_tokens=served.lm.config.max_seq_len)
    assert long.value.body["param"] == "max_tokens" and "maximum context length" in long.value.body["message"]
    out = served.client.completions.create(model=MODEL, prompt="The cat sat on the", max_tokens=6, temperature=0)
    assert out.choices[0].text == library(served.lm, "The cat sat on the", max_tokens=6, temperature=0).text


LONG_STREAM = {"model": MODEL, "prompt": "Count: 1, 2, 3,", "max_tokens": 400, "ignore_eos": True, "stream": True,
               "temperature": 0}


def open_stream(http: httpx.Client, body: dict) -> httpx.Response:
    return http.send(http.build_request("POST", "/v1/completions", json=body), stream=True)


def test_a_client_that_disconnects_mid_stream_frees_its_sequence(served):
    before = generated_tokens(served.http)
    response = open_stream(served.http, LONG_STREAM)
    lines = response.iter_lines()
    assert next(line for line in lines if line.startswith("data: "))
    assert wait_for(lambda: served.lm.scheduler.stats()["running"] == 1, timeout=10)
    response.close()
    assert wait_for(lambda: served.lm.scheduler.stats()["running"] == 0, timeout=10)
    assert wait_for(lambda: generated_tokens(served.http) > before, timeout=5)
    assert generated_tokens(served.http) - before < LONG_STREAM["max_tokens"]


def test_a_client_that_gives_up_on_a_whole_response_frees_its_sequence_too(served):
    body = {**LONG_STREAM, "stream": False}
    with httpx.Client(base_url=served.url, trust_env=False, timeout=1.0) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post("/v1/completions", json=body)
    assert wait_for(lambda: idle(served.lm.scheduler.stats()), timeout=10)


def test_a_full_queue_is_429_and_cancelled_streams_leave_the_runtime_idle(served):
    streams, refused = [], None
    try:
        for _ in range(served.limits["max_running"] + served.limits["max_queue"] + 1):
            response = open_stream(served.http, LONG_STREAM)
            if response.status_code == 429:
                refused = response
                break
            assert response.status_code == 200
            streams.append(response)
        assert refused is not None, "the queue never filled"
        refused.read()
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "queue_full"
        assert refused.headers["retry-after"] == "1"
    finally:
        for response in streams:
            response.close()
    assert wait_for(lambda: idle(served.lm.scheduler.stats()), timeout=20)
    out = served.client.completions.create(model=MODEL, prompt="The cat sat on the", max_tokens=6, temperature=0)
    assert out.choices[0].text == library(served.lm, "The cat sat on the", max_tokens=6, temperature=0).text


def idle(stats: dict) -> bool:
    return stats["running"] == 0 and stats["waiting"] == 0


def generated_tokens(http: httpx.Client) -> float:
    return metric(http, "tokenloom_generation_tokens_total")


def metric(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is missing from /metrics")


def test_a_repeated_prompt_reuses_the_prefix_cache_and_says_so(served):
    prompt = "You are a careful assistant. Answer in one short sentence, and never use lists. " * 2
    hits = metric(served.http, "tokenloom_prefix_cache_hits_total")
    first = served.client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, temperature=0)
    again = served.client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, temperature=0)
    assert again.choices[0].text == first.choices[0].text
    assert again.usage.prompt_tokens_details.cached_tokens >= 16
    assert metric(served.http, "tokenloom_prefix_cache_hits_total") > hits


def test_metrics_count_the_traffic(served):
    served.client.completions.create(model=MODEL, prompt="Hello", max_tokens=2, temperature=0)
    text = served.http.get("/metrics").text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line and line[0] != "#"}
    assert values['tokenloom_http_requests_total{code="200",endpoint="/v1/completions"}'] >= 1
    assert values["tokenloom_prompt_tokens_total"] > 0 and values["tokenloom_generation_tokens_total"] >= 2
    assert values["tokenloom_time_to_first_token_seconds_count"] >= 1
    assert values["tokenloom_inter_token_latency_seconds_count"] >= 1
    assert "tokenloom_prefix_cache_hits_total" in values
