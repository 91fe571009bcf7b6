"""From a request body to what the runtime takes: token ids per prompt and one SamplingParams.

Everything here either returns the library's own values or raises `APIError` (400)
naming the request field at fault and what it allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from tokenloom.app.serve.errors import bad_request, from_invalid_argument
from tokenloom.app.serve.schemas import SAMPLING_FIELDS, ChatMessage, ChatRequest, CompletionRequest
from tokenloom.errors import InvalidArgument
from tokenloom.generation.constraints import KINDS as CONSTRAINT_FIELDS
from tokenloom.generation.params import SamplingParams


@dataclass
class Prompt:
    ids: list[int]
    text: str  # what `echo` puts before the completion


# -- prompts -------------------------------------------------------------------------
def completion_prompts(lm, prompt: str | list) -> list[Prompt]:
    """OpenAI's four spellings of `prompt`: "text", ["a", "b"], [1, 2], [[1, 2], [3]]."""
    if isinstance(prompt, str):
        return [_text_prompt(lm, prompt, "prompt")]
    if not prompt:
        raise bad_request("prompt must not be an empty list", "prompt")
    if isinstance(prompt[0], str):
        return [_text_prompt(lm, text, f"prompt[{i}]") for i, text in enumerate(prompt)]
    if isinstance(prompt[0], int):
        return [_id_prompt(lm, prompt, "prompt")]
    return [_id_prompt(lm, ids, f"prompt[{i}]") for i, ids in enumerate(prompt)]


def _text_prompt(lm, text: str, where: str) -> Prompt:
    ids = lm.tokenizer.encode(text) if text else []
    if not ids:
        raise bad_request(f"{where} is empty: give at least one token of text", "prompt")
    return Prompt(ids, text)


def _id_prompt(lm, ids: list[int], where: str) -> Prompt:
    if not ids:
        raise bad_request(f"{where} is an empty list of token ids", "prompt")
    check_vocabulary(where, ids, lm.tokenizer.vocab_size, "prompt")
    return Prompt(list(ids), lm.tokenizer.decode(ids))


def check_vocabulary(where: str, ids, vocab_size: int, param: str) -> None:
    for i, token in enumerate(ids):
        if not 0 <= token < vocab_size:
            raise bad_request(
                f"{where}[{i}] = {token} is not a token id: the vocabulary is [0, {vocab_size - 1}]", param)


def message_dicts(messages: list[ChatMessage]) -> list[dict]:
    """What the chat template reads: developer messages are system messages; text parts are joined."""
    out = []
    for m in messages:
        content = m.content if isinstance(m.content, str) else "\n".join(part.text for part in m.content)
        message = {"role": "system" if m.role == "developer" else m.role, "content": content}
        if m.name is not None:
            message["name"] = m.name
        out.append(message)
    return out


def chat_text(lm, messages: list[ChatMessage], add_generation_prompt: bool = True) -> str:
    try:
        return lm.tokenizer.apply_chat_template(message_dicts(messages),
                                                add_generation_prompt=add_generation_prompt)
    except InvalidArgument as error:
        raise bad_request(str(error), "messages") from None


def chat_prompt(lm, messages: list[ChatMessage]) -> Prompt:
    text = chat_text(lm, messages)
    return Prompt(lm.tokenizer.encode(text), text)


def check_context(prompts: list[Prompt], max_tokens: int | None, context: int, prompt_param: str,
                  max_param: str) -> None:
    """A prompt must leave room for one token; prompt + max_tokens must fit the context, as vLLM says."""
    for i, prompt in enumerate(prompts):
        where = f"{prompt_param}[{i}]" if len(prompts) > 1 else prompt_param
        size = len(prompt.ids)
        if size >= context:
            raise bad_request(
                f"This model's maximum context length is {context} tokens; {where} has {size} tokens, "
                f"so at most {context - 1} are allowed (one must be left to generate)", prompt_param)
        if max_tokens is not None and size + max_tokens > context:
            raise bad_request(
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{size + max_tokens} tokens ({size} in {where}, {max_tokens} in the completion). "
                f"Please reduce the length of {where} or {max_param}.", max_param)


# -- sampling ------------------------------------------------------------------------------
def sampling_params(body: BaseModel, vocab_size: int, renames: dict[str, str] | None = None,
                    **endpoint_fields) -> SamplingParams:
    """SamplingParams from the body's sampling fields (null: the default) and the endpoint's own."""
    given = {field: getattr(body, request) for request, field in SAMPLING_FIELDS.items()
             if getattr(body, request) is not None}
    given.update({name: value for name, value in endpoint_fields.items() if value is not None})
    renames = {**{field: request for request, field in SAMPLING_FIELDS.items() if field != request},
               **(renames or {})}
    renames.update({name: "response_format" for name in endpoint_fields if name in CONSTRAINT_FIELDS})
    try:
        params = SamplingParams(**given)
    except InvalidArgument as error:
        raise from_invalid_argument(error, set(type(body).model_fields), renames) from None
    if params.logit_bias:
        check_vocabulary("logit_bias token ids", sorted(params.logit_bias), vocab_size, "logit_bias")
    check_vocabulary("stop_token_ids", params.stop_token_ids, vocab_size, "stop_token_ids")
    return params


def check_capacity(sequences: int, capacity: int | None) -> None:
    """A request whose prompts × n could never be admitted at once is a 400, not a 429 to retry."""
    if capacity is not None and sequences > capacity:
        raise bad_request(
            f"n × the number of prompts is {sequences}; this server holds at most {capacity} sequences "
            "(its --max-running plus --max-queue)", "n")


def check_stream_options(body: CompletionRequest | ChatRequest) -> None:
    if body.stream_options is not None and not body.stream:
        raise bad_request("stream_options is only allowed when stream is true", "stream_options")


def completion_max_tokens(body: CompletionRequest) -> int | None:
    """max_tokens as given; 0 is allowed only with echo (score the prompt, generate nothing)."""
    if body.max_tokens == 0 and not body.echo:
        raise bad_request("max_tokens must be at least 1; 0 is allowed only with echo, to score the prompt",
                          "max_tokens")
    return body.max_tokens


def check_completion_extras(body: CompletionRequest) -> None:
    check_stream_options(body)
    if body.suffix is not None:
        raise bad_request("suffix is not supported (no fill-in-the-middle); leave it out or null", "suffix")
    n = body.n if body.n is not None else 1
    if body.best_of is not None and body.best_of not in (1, n):
        raise bad_request(f"best_of must be 1 or equal to n ({n}): candidates are not ranked here; "
                          f"got {body.best_of}", "best_of")


def chat_max_tokens(body: ChatRequest) -> tuple[int | None, str]:
    """(max_completion_tokens or max_tokens, the name the client used)."""
    new, old = body.max_completion_tokens, body.max_tokens
    if new is not None and old is not None and new != old:
        raise bad_request(f"max_tokens ({old}) and max_completion_tokens ({new}) disagree; give one",
                          "max_completion_tokens")
    return (new, "max_completion_tokens") if new is not None else (old, "max_tokens")


def chat_logprobs(body: ChatRequest) -> int | None:
    """SamplingParams.logprobs for chat: top_logprobs alternatives when logprobs is true."""
    if body.top_logprobs is not None and not body.logprobs:
        raise bad_request("top_logprobs needs logprobs: true", "top_logprobs")
    return (body.top_logprobs or 0) if body.logprobs else None


_NEUTRAL = {  # chat fields accepted only at the value that asks for nothing
    "tools": lambda v: v is None or v == [],
    "tool_choice": lambda v: v in (None, "none"),
    "store": lambda v: not v,
    "modalities": lambda v: v is None or v == ["text"],
}


def check_chat_extras(body: ChatRequest) -> None:
    check_stream_options(body)
    for name, neutral in _NEUTRAL.items():
        value = getattr(body, name)
        if not neutral(value):
            shown = value.model_dump() if isinstance(value, BaseModel) else value
            raise bad_request(f"{name}={shown!r} is not supported: tokenloom serves text and structured output "
                              f"(tools and stored completions are not implemented)", name)


def response_format(body: ChatRequest) -> dict:
    """OpenAI's response_format as SamplingParams fields: {} for text, json_object, or json_schema.

    Given together with one of vLLM's guided_* fields it is a 400: one request, one constraint.
    """
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return {}
    guided = [request for request, field in SAMPLING_FIELDS.items() if field in CONSTRAINT_FIELDS
              and getattr(body, request) is not None]
    if guided:
        raise bad_request(f"response_format {fmt.type!r} and {guided[0]} both constrain the reply; give one",
                          "response_format")
    if fmt.type == "json_object":
        return {"json_object": True}
    if fmt.json_schema is None or fmt.json_schema.schema_ is None:
        raise bad_request("response_format of type 'json_schema' needs json_schema: {'name': ..., 'schema': "
                          "{...}}, with the schema under 'schema'", "response_format")
    return {"json_schema": fmt.json_schema.schema_}
