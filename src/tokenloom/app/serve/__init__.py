"""`tokenloom serve`: an OpenAI-compatible HTTP server (FastAPI + uvicorn) on the runtime's scheduler.

    from tokenloom.app.serve import ServeConfig, create_app, run
    run(ServeConfig(model="smollm2-135m-instruct", port=8000))

Names are imported on first use, so the CLI can read `ServeConfig` without loading FastAPI.
"""

from importlib import import_module

_LAZY = {
    "BackgroundServer": "tokenloom.app.serve.server",
    "ServeConfig": "tokenloom.app.serve.config",
    "create_app": "tokenloom.app.serve.api",
    "run": "tokenloom.app.serve.server",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tokenloom.app.serve' has no attribute {name!r}")
