"""The request and response bodies, as pydantic models; FastAPI builds the OpenAPI schema from them.

Request models forbid unknown fields, so a misspelt `temprature` is a 400 that names
it, never a silent default. The sampling fields are not written out here: they are
derived from `SamplingParams`' declarations (`SamplingFields`), each nullable with
null meaning "the library's default", so that the two can never drift apart. Types
are checked strictly ("0.5" is not a number); ranges are checked by `SamplingParams`
itself, whose messages name field, value and range.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from tokenloom.generation.options import declared_fields
from tokenloom.generation.params import ORDERS, SamplingParams

STRICT = ConfigDict(extra="forbid", strict=True)

# Fields whose meaning or spelling differs between the two endpoints are declared by each.
ENDPOINT_FIELDS = ("max_tokens", "logprobs")
# Where a field's JSON shape is not its Python declaration.
_JSON_SHAPES: dict[str, Any] = {"stop": Union[str, list[str]], "order": Literal[ORDERS],
                                "samplers": Union[str, list[str]], "json_schema": Union[dict[str, Any], str]}


def _json_type(annotation: Any) -> Any:
    """The JSON-side type of a declaration: tuples are lists, dict keys are strings, None is dropped."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        members = [_json_type(a) for a in args if a is not type(None)]
        return members[0] if len(members) == 1 else Union[tuple(members)]
    if origin is tuple:
        return list[_json_type(args[0])]
    if origin is dict:
        return dict[str, _json_type(args[1])]
    return annotation


def _sampling_fields() -> tuple[dict[str, Any], dict[str, str]]:
    """The pydantic fields, and request name -> SamplingParams field (vLLM's guided_json is json_schema)."""
    hints = typing.get_type_hints(SamplingParams)
    fields, names = {}, {}
    for f, declared in declared_fields(SamplingParams):
        request = f.name if declared.api is None else declared.api
        if f.name in ENDPOINT_FIELDS or not request:
            continue
        json_type = _JSON_SHAPES.get(f.name, _json_type(hints[f.name]))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = json.dumps(list(default) if isinstance(default, tuple) else default)
        allowed = f" in {declared.allowed()}" if declared.allowed() else ""
        described = Field(default=None, description=f"{declared.help}{allowed}; null means {default} "
                                                    f"(tokenloom.SamplingParams.{f.name})")
        fields[request], names[request] = (Union[json_type, None], described), f.name
    return fields, names


_FIELDS, SAMPLING_FIELDS = _sampling_fields()  # SAMPLING_FIELDS: request field -> SamplingParams field
SamplingFields = create_model("SamplingFields", __config__=STRICT, **_FIELDS)


class StreamOptions(BaseModel):
    model_config = STRICT
    include_usage: bool | None = Field(None, description="A last chunk with `usage` and no choices.")


class _Generation(SamplingFields):
    """What both generation endpoints take beyond the sampling fields."""

    model: str = Field(description="The served model's id, as GET /v1/models lists it.")
    stream: bool | None = Field(None, description="Server-sent events, one chunk per released piece of text.")
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, description="Accepted and not used.")


class CompletionRequest(_Generation):
    prompt: Union[str, list[str], list[int], list[list[int]]] = Field(
        description="A string, a list of strings, a list of token ids or a list of lists of token ids.")
    max_tokens: int | None = Field(None, description="Tokens to generate (default 16); 0 only with echo.")
    logprobs: int | None = Field(
        None, description="Log probabilities of the chosen token and this many alternatives (0..20).")
    echo: bool | None = Field(None, description="Put the prompt before the completion (and its logprobs).")
    best_of: int | None = Field(None, description="Only 1 or n: candidates are not ranked here.")
    suffix: str | None = Field(None, description="Not supported: must be null or absent.")


class TextPart(BaseModel):
    model_config = STRICT
    type: Literal["text"]
    text: str


Role = Literal["system", "developer", "user", "assistant", "tool"]


class ChatMessage(BaseModel):
    model_config = STRICT
    role: Role
    content: Union[str, list[TextPart]]
    name: str | None = None


class JSONSchemaFormat(BaseModel):
    """OpenAI's response_format.json_schema: a named schema; `strict` is accepted (output always follows it)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
    name: str = Field(description="The schema's name (a-z, A-Z, 0-9, _ and -).")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="The JSON schema the reply follows.")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = STRICT
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class ChatRequest(_Generation):
    messages: list[ChatMessage] = Field(min_length=1, description="Rendered with the model's chat template.")
    max_completion_tokens: int | None = Field(
        None, description="Tokens to generate; default: the rest of the context.")
    max_tokens: int | None = Field(None, description="The older name of max_completion_tokens.")
    logprobs: bool | None = Field(None, description="Log probability of each chosen token.")
    top_logprobs: int | None = Field(None, description="Alternatives listed per token (0..20); needs logprobs.")
    tools: list[dict[str, Any]] | None = Field(None, description="Not supported: null or [].")
    tool_choice: Union[str, dict[str, Any], None] = Field(None, description="Only 'none'.")
    parallel_tool_calls: bool | None = Field(None, description="Accepted; there are no tools.")
    response_format: ResponseFormat | None = Field(
        None, description="{'type': 'text'}, {'type': 'json_object'} or {'type': 'json_schema', 'json_schema': "
                          "{'name': ..., 'schema': {...}}}: the reply is then JSON that follows it.")
    store: bool | None = Field(None, description="Nothing is stored: only false.")
    metadata: dict[str, str] | None = Field(None, description="Accepted and not used.")
    service_tier: str | None = Field(None, description="Accepted and not used.")
    modalities: list[str] | None = Field(None, description="Only ['text'].")


class TokenizeRequest(BaseModel):
    model_config = STRICT
    model: str | None = None
    prompt: str | None = Field(None, description="Text to encode (give this or messages).")
    messages: list[ChatMessage] | None = Field(None, min_length=1, description="Chat rendered with the template.")
    add_generation_prompt: bool | None = Field(
        None, description="With messages: end with the assistant's turn (default true).")


class DetokenizeRequest(BaseModel):
    model_config = STRICT
    model: str | None = None
    tokens: list[int]


# -- responses ----------------------------------------------------------------------
class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tokenloom"
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class PromptTokensDetails(BaseModel):
    cached_tokens: int


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


FinishReason = Literal["stop", "length"]


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None
    stop_reason: Union[str, int, None] = Field(None, description="The stop string or stop token id that ended it.")


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None
    refusal: list[TokenLogprobOut] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: FinishReason | None = None
    stop_reason: Union[str, int, None] = None


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChatLogprobs | None = None
    finish_reason: FinishReason | None = None
    stop_reason: Union[str, int, None] = None


class ChatChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class TokenizeResponse(BaseModel):
    tokens: list[int]
    count: int
    max_model_len: int


class DetokenizeResponse(BaseModel):
    prompt: str


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    model: str
    detail: str | None = None
