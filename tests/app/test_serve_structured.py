"""Structured output through `tokenloom serve` with the real `openai` client: OpenAI's
response_format and vLLM's guided_* fields (sent as extra_body, as vLLM's docs show)."""

from __future__ import annotations

import json
import re

import openai
import pytest


pytestmark = pytest.mark.slow
jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("llguidance")

MODEL = "smollm2-135m-instruct"
SCHEMA = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]},
                                           "confidence": {"type": "integer", "minimum": 0, "maximum": 100}},
          "required": ["answer", "confidence"]}
ASK = [{"role": "user", "content": "Is the sky blue? Answer in JSON."}]


@pytest.fixture
def client(served):
    return served.client  # the server the conftest starts once for these files


def test_response_format_json_schema_gives_json_that_validates(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, temperature=0, max_completion_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True}})
    choice = reply.choices[0]
    jsonschema.validate(json.loads(choice.message.content), SCHEMA)
    assert choice.finish_reason == "stop"


def test_response_format_json_object_streams_an_object(client):
    stream = client.chat.completions.create(model=MODEL, messages=ASK, temperature=0, max_completion_tokens=24,
                                            response_format={"type": "json_object"}, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.startswith("{"), text


def test_guided_fields_constrain_completions(client):
    choice = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=8, temperature=0.8,
                                       extra_body={"guided_choice": ["blue", "green"], "seed": 1})
    assert choice.choices[0].text in ("blue", "green")
    regex = client.completions.create(model=MODEL, prompt="Call", max_tokens=12,
                                      extra_body={"guided_regex": r"\d{3}-\d{4}", "seed": 2})
    assert re.fullmatch(r"\d{3}-\d{4}", regex.choices[0].text)
    grammar = client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=8,
                                             extra_body={"guided_grammar": 'root ::= "Yes." | "No."'})
    assert grammar.choices[0].message.content in ("Yes.", "No.")
    guided = client.chat.completions.create(model=MODEL, messages=ASK, temperature=0, max_completion_tokens=40,
                                            extra_body={"guided_json": SCHEMA})
    jsonschema.validate(json.loads(guided.choices[0].message.content), SCHEMA)


def test_a_schema_that_cannot_compile_is_a_400_naming_the_part(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model=MODEL, messages=ASK, max_completion_tokens=8,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "x", "schema": {"type": "array", "uniqueItems": True}}})
    body = error.value.body
    assert body["param"] == "response_format" and "uniqueItems" in body["message"]
