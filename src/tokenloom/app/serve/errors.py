"""Errors as OpenAI writes them: `{"error": {"message", "type", "param", "code"}}`.

Every message says what was wrong and what is allowed. `param` names the request
field at fault, as a path where the field is nested (`messages[0].role`).
Pydantic's validation errors, the library's `InvalidArgument` and Starlette's own
HTTP errors (unknown path, wrong method) are all turned into this one shape.
"""

from __future__ import annotations

import logging
import re
from typing import Any, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from tokenloom.errors import InvalidArgument

log = logging.getLogger("tokenloom.serve")

INVALID_REQUEST = "invalid_request_error"
_TYPES = {429: "rate_limit_error", 500: "server_error", 503: "server_error"}  # the rest: invalid_request_error


class APIError(Exception):
    """An error response: HTTP status, OpenAI error fields and optional headers."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = _TYPES.get(status, INVALID_REQUEST)
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(message: str, type: str = INVALID_REQUEST, param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param)


def from_invalid_argument(error: InvalidArgument, fields: set[str],
                          renames: dict[str, str] | None = None) -> APIError:
    """400 with the library's message; `param` is the field the message starts with.

    "top_p must be in (0, 1], got 1.5" -> param "top_p"; `renames` maps a library
    field to the request field the client used, in the message too
    ("logprobs must be in [0, 20]" -> "top_logprobs must be in [0, 20]" for chat).
    """
    message = str(error)
    match = re.match(r"[A-Za-z_]+", message)
    name = match.group(0) if match else None
    if name in (renames or {}):
        message, name = renames[name] + message[len(name):], renames[name]
    return bad_request(message, name if name in fields else None)


# -- pydantic's validation errors ----------------------------------------------
def from_validation_error(error: RequestValidationError, model: type[BaseModel] | None) -> APIError:
    """The first problem of the request, said with the field's path and what the field allows.

    Of the errors pydantic lists for the members of a union, the one that reached
    deepest into nested objects says best what is wrong (`messages[0].content[0].type`).
    """
    errors = error.errors()
    if model is not None and len(errors) > 1:
        depth = [_walk(model, tuple(e["loc"])[1:], e["type"] == "extra_forbidden")[0].count(".") for e in errors]
        errors = [errors[depth.index(max(depth))]]
    first = errors[0]
    kind, loc = first["type"], tuple(first["loc"])[1:]  # loc[0] is "body"
    if kind == "json_invalid":
        reason = first.get("ctx", {}).get("error", "")
        return bad_request(f"the request body is not valid JSON: {reason}")
    if not loc:
        return bad_request("the request body must be a JSON object")
    if model is None:
        return bad_request(f"{_dotted(loc)}: {first['msg']}", _dotted(loc))
    path, owner = _walk(model, loc, extra=kind == "extra_forbidden")
    if kind == "extra_forbidden":
        allowed = ", ".join(owner.model_fields) if owner is not None else "the documented fields"
        return bad_request(f"unknown field {path!r}; allowed here: {allowed}", path)
    if kind == "missing":
        return bad_request(f"{path} is required", path)
    top = str(loc[0])
    if path == top and top in model.model_fields and (kind.endswith("_type") or kind == "literal_error"):
        schema = model.model_json_schema()
        value = error.body.get(top) if isinstance(error.body, dict) else first.get("input")
        allowed = describe(schema, schema["properties"][top])
        return bad_request(f"{path} must be {allowed}, got {_short(value)}", path)
    return bad_request(f"{path}: {first['msg']}, got {_short(first.get('input'))}", path)


def _walk(model: type[BaseModel], loc: tuple, extra: bool) -> tuple[str, type[BaseModel] | None]:
    """The field path of `loc` ("messages[0].role") and the model that holds its last field.

    Pydantic puts the member of a union it tried into `loc` ("prompt", "list[int]", 0);
    such tags name no field and are left out of the path. With `extra`, the last
    part is a field that no model declares.
    """
    path, owner, current = "", None, model
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif current is not None and (part in current.model_fields or extra and i == len(loc) - 1):
            path += f".{part}" if path else str(part)
            field = current.model_fields.get(part)
            owner, current = current, _model_inside(field.annotation) if field else None
    return path, owner


def _model_inside(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X | None`, `list[X]`, `str | list[X]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_inside(arg)
        if found is not None:
            return found
    return None


def _dotted(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_WORDS = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "true or false",
          "null": "null", "object": "an object"}


def describe(root: dict, schema: dict, plural: bool = False) -> str:
    """A JSON schema in words: {"anyOf": [{"type": "string"}, {"type": "null"}]} -> "a string or null"."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return describe(root, root.get("$defs", {}).get(name, {"type": "object"}), plural)
    if "anyOf" in schema:
        parts = [describe(root, s, plural) for s in schema["anyOf"]]
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]
    if "const" in schema or "enum" in schema:
        values = schema.get("enum", [schema.get("const")])
        return "one of " + ", ".join(repr(v) for v in values)
    kind = schema.get("type", "object")
    if kind == "array":
        return ("lists" if plural else "a list") + " of " + describe(root, schema.get("items", {}), plural=True)
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "an object whose values are " + describe(root, schema["additionalProperties"], plural=True)
    word = _WORDS.get(kind, kind)
    if plural and word not in ("null", "true or false"):
        word = word.split(" ", 1)[-1] + "s"
    return word


# -- wiring ------------------------------------------------------------------------
def install_handlers(app: FastAPI, body_models: dict[str, type[BaseModel]]) -> None:
    """Every error leaves the app as OpenAI's error JSON; `body_models` maps a path to its request model."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return from_validation_error(error, body_models.get(request.url.path)).response()

    @app.exception_handler(InvalidArgument)
    async def invalid_argument(request: Request, error: InvalidArgument) -> JSONResponse:
        return bad_request(str(error)).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        if error.status_code == 404:
            message = f"no route {request.url.path!r}; see /docs for the endpoints"
        elif error.status_code == 405:
            allowed = error.headers.get("Allow", "")
            message = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
        code = "request_too_large" if error.status_code == 413 else None
        return APIError(error.status_code, message, code=code, headers=error.headers).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return APIError(500, f"internal error: {type(error).__name__}: {error}").response()
