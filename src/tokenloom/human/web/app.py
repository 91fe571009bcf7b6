"""The rating app: `create_app(db)` returns a FastAPI application.

    tokenloom human serve --db ratings.db --port 8765

Pages are rendered on the server (Jinja2, autoescaped); the only script is
/static/rate.js (keyboard shortcuts, time on task). Every asset is served from
here, nothing from a CDN, and the interactive API docs (which load a CDN) are
off; the OpenAPI schema is at /openapi.json.

Every response carries a strict Content-Security-Policy (scripts and styles
from this origin only, no framing), `nosniff`, `no-referrer` and `no-store`.
Request bodies over MAX_BODY_BYTES get 413 before they are read in full.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from tokenloom.errors import InvalidArgument
from tokenloom.human.render import STATIC
from tokenloom.human.store import RatingStore, StudyClosed

MAX_BODY_BYTES = 64 * 1024
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                 b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class Guard:
    """ASGI middleware: security headers on every response, a cap on body size."""

    def __init__(self, app, max_body: int = MAX_BODY_BYTES):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await _too_large(send, self.max_body)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise _BodyTooLarge()
            return message

        async def secured_send(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    h for h in SECURITY_HEADERS if h[0] not in names]
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except _BodyTooLarge:
            await _too_large(send, self.max_body)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send, limit: int) -> None:
    body = f'{{"detail": "request body over {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


def create_app(db: str | Path) -> FastAPI:
    """The app over one ratings database (every study in it)."""
    from tokenloom.human.web.api import api_router
    from tokenloom.human.web.pages import page_router

    store = RatingStore(db)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        store.close()

    app = FastAPI(title="tokenloom human evaluation", version="1", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Rate outputs (rater token) and read results (admin token). "
                              "Authenticate with `Authorization: Bearer TOKEN`.")
    app.state.store = store
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.include_router(api_router)
    app.include_router(page_router)

    @app.exception_handler(StudyClosed)
    async def closed(_request: Request, error: StudyClosed):
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(InvalidArgument)
    async def invalid(_request: Request, error: InvalidArgument):
        return JSONResponse({"detail": str(error)}, status_code=400)

    app.add_middleware(Guard)
    return app


def serve(db: str | Path, host: str = "127.0.0.1", port: int = 8765, log_level: str = "warning") -> None:
    import uvicorn

    uvicorn.run(create_app(db), host=host, port=port, log_level=log_level)
