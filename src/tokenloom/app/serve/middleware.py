"""Plain ASGI middleware: request counting, the API key and the body-size limit.

Each one wraps the app below it and answers with OpenAI's error JSON where it refuses
a request. They are pure ASGI (no BaseHTTPMiddleware), so streaming responses and
client disconnects pass through them untouched.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenloom.app.serve.errors import APIError
from tokenloom.app.serve.metrics import ServeMetrics


class CountRequests:
    """tokenloom_http_requests_total{endpoint, code} for every answered request."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, endpoints: set[str]):
        self.app, self.metrics, self.endpoints = app, metrics, endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500

        async def remember(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, remember)
        finally:
            endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
            self.metrics.requests.labels(endpoint=endpoint, code=str(status)).inc()


class RequireApiKey:
    """401 unless `Authorization: Bearer <key>` matches, compared in constant time."""

    def __init__(self, app: ASGIApp, key: str, open_paths: set[str]):
        self.app, self.key, self.open_paths = app, key.encode(), open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key):
            return await self.app(scope, receive, send)
        message = ("missing API key: send the header 'Authorization: Bearer <key>'" if not header
                   else "incorrect API key in the Authorization header (expected 'Bearer <key>')")
        error = APIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        await error.response()(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body passes the limit; FastAPI passes HTTPExceptions on."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than this server's limit of {limit} bytes")


class LimitBody:
    """413 past `limit` bytes: from Content-Length before reading, else while the body arrives."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            status, text = (413, BodyTooLarge(self.limit).detail) if declared.isdigit() else (
                400, f"Content-Length must be a number of bytes, got {declared!r}")
            return await APIError(status, text, code="request_too_large" if status == 413 else None,
                                  headers={"Connection": "close"}).response()(scope, receive, send)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)
