"""The FastAPI app: OpenAI's endpoints on top of the runtime's scheduler.

    GET  /v1/models              the one served model
    POST /v1/completions         prompt(s) -> text, streamed with SSE when `stream` is true
    POST /v1/chat/completions    messages -> reply
    POST /tokenize, /detokenize  text or messages <-> token ids
    GET  /health                 503 while the model loads, 200 once it serves
    GET  /metrics                Prometheus text format

The model loads in a background thread when the app starts, so /health answers at
once. The app keeps no state a client depends on beyond the runtime's prefix cache:
any number of servers can sit behind one HTTP load balancer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tokenloom.app.serve import schemas as s
from tokenloom.app.serve.chat import create_chat_completion
from tokenloom.app.serve.completions import create_completion
from tokenloom.app.serve.config import ServeConfig
from tokenloom.app.serve.errors import APIError, install_handlers
from tokenloom.app.serve.metrics import ServeMetrics
from tokenloom.app.serve.middleware import CountRequests, LimitBody, RequireApiKey
from tokenloom.app.serve.prompts import chat_text, check_vocabulary

log = logging.getLogger("tokenloom.serve")

OPEN_PATHS = {"/health", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
_ERRORS = {code: {"model": s.ErrorResponse} for code in (400, 401, 404, 413, 429, 503)}
_STREAMED = {200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}}


def load_model(config: ServeConfig):
    """The model with a runtime sized by the config (RuntimeLimits' defaults where a limit is not given)."""
    import tokenloom as tl
    from tokenloom.generation.scheduler import RuntimeLimits

    return tl.load(config.model, precision=config.precision, device=config.device, compile=config.compile,
                   limits=RuntimeLimits(**config.limits))


class ServerState:
    """The served model once it has loaded, and what every endpoint needs to know about it."""

    def __init__(self, config: ServeConfig, loader: Callable, metrics: ServeMetrics):
        self.config, self.loader, self.metrics = config, loader, metrics
        self.name = config.model
        self.lm, self.failure, self.capacity = None, None, None
        self.created = int(time.time())

    def start_loading(self) -> threading.Thread:
        thread = threading.Thread(target=self._load, name="tokenloom-load", daemon=True)
        thread.start()
        return thread

    def _load(self) -> None:
        try:
            lm = self.loader()
        except Exception as error:  # reported by /health and every endpoint
            log.exception("loading %s failed", self.name)
            self.failure = f"{type(error).__name__}: {error}"
            return
        lm.scheduler.start_background()  # asyncio handlers wait; the worker thread computes
        self.capacity = _capacity(lm.scheduler, self.config)
        self.metrics.bind(lm.scheduler)
        self.lm = lm
        log.info("serving %s (context %d tokens)", self.name, lm.config.max_seq_len)

    def model(self):
        if self.lm is not None:
            return self.lm
        if self.failure is not None:
            raise APIError(503, f"the model failed to load: {self.failure}", code="model_load_failed")
        raise APIError(503, "the model is still loading; GET /health answers 200 once it is ready",
                       code="model_loading", headers={"Retry-After": "5"})

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.name:
            raise APIError(404, f"the model {name!r} does not exist here; this server serves {self.name!r}",
                           param="model", code="model_not_found")


def _capacity(scheduler, config: ServeConfig) -> int:
    """How many sequences the runtime holds at once, running plus waiting."""
    limits = getattr(scheduler, "limits", None)
    if limits is None:
        from tokenloom.generation.scheduler import RuntimeLimits

        limits = RuntimeLimits(**config.limits)
    return limits.max_running + limits.max_queue


def create_app(config: ServeConfig | None = None, loader: Callable | None = None) -> FastAPI:
    """The app for `config`; `loader()` returns the LanguageModel (default: `load_model(config)`)."""
    config = config or ServeConfig()
    metrics = ServeMetrics()
    state = ServerState(config, loader or (lambda: load_model(config)), metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start_loading()
        yield

    app = FastAPI(title="tokenloom", version=_version(), lifespan=lifespan,
                  description="OpenAI-compatible completions and chat on a tokenloom model.")
    app.state.serve = state
    _routes(app, state)
    _without_422(app)
    install_handlers(app, {"/v1/completions": s.CompletionRequest, "/v1/chat/completions": s.ChatRequest,
                           "/tokenize": s.TokenizeRequest, "/detokenize": s.DetokenizeRequest})
    if config.api_key is not None:
        app.add_middleware(RequireApiKey, key=config.api_key, open_paths=OPEN_PATHS)
    app.add_middleware(LimitBody, limit=config.max_body_bytes)
    app.add_middleware(CountRequests, metrics=metrics, endpoints={r.path for r in app.routes})
    return app


def _without_422(app: FastAPI) -> None:
    """Bad bodies get 400 here, as in OpenAI's API; FastAPI's generated 422 entries are dropped."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _version() -> str:
    from tokenloom import __version__

    return __version__


def _routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/v1/models", response_model=s.ModelList, responses=_ERRORS)
    async def models() -> s.ModelList:
        length = state.lm.config.max_seq_len if state.lm is not None else None
        return s.ModelList(data=[s.ModelCard(id=state.name, created=state.created, max_model_len=length)])

    @app.post("/v1/completions", response_model=s.CompletionResponse, responses={**_ERRORS, **_STREAMED})
    async def completions(body: s.CompletionRequest, request: Request):
        return await create_completion(state, body, request)

    @app.post("/v1/chat/completions", response_model=s.ChatResponse, responses={**_ERRORS, **_STREAMED})
    async def chat_completions(body: s.ChatRequest, request: Request):
        return await create_chat_completion(state, body, request)

    @app.post("/tokenize", response_model=s.TokenizeResponse, responses=_ERRORS)
    async def tokenize(body: s.TokenizeRequest) -> s.TokenizeResponse:
        return _tokenize(state, body)

    @app.post("/detokenize", response_model=s.DetokenizeResponse, responses=_ERRORS)
    async def detokenize(body: s.DetokenizeRequest) -> s.DetokenizeResponse:
        lm = state.model()
        state.check_model(body.model)
        check_vocabulary("tokens", body.tokens, lm.tokenizer.vocab_size, "tokens")
        return s.DetokenizeResponse(prompt=lm.tokenizer.decode(body.tokens))

    @app.get("/health", response_model=s.Health, responses={503: {"model": s.Health}})
    async def health():
        status = "ok" if state.lm is not None else ("failed" if state.failure else "loading")
        body = s.Health(status=status, model=state.name, detail=state.failure)
        return JSONResponse(body.model_dump(), status_code=200 if status == "ok" else 503)

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _tokenize(state: ServerState, body: s.TokenizeRequest) -> s.TokenizeResponse:
    lm = state.model()
    state.check_model(body.model)
    if (body.prompt is None) == (body.messages is None):
        raise APIError(400, "give exactly one of prompt (text) or messages (a chat)",
                       param="prompt" if body.prompt is None else "messages")
    if body.messages is not None:
        add = body.add_generation_prompt is not False
        text = chat_text(lm, body.messages, add_generation_prompt=add)
    else:
        text = body.prompt
    tokens = lm.tokenizer.encode(text)
    return s.TokenizeResponse(tokens=tokens, count=len(tokens), max_model_len=lm.config.max_seq_len)
