"""One `tokenloom serve` on 127.0.0.1 with SmolLM2-135M-Instruct, shared by the test files that
drive it with the real `openai` client (loaded once per run, not once per file)."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

SERVED_MODEL = "smollm2-135m-instruct"
SERVED_LIMITS = {"max_running": 4, "max_queue": 4}


@pytest.fixture(scope="session")
def served():
    """lm (the library, the oracle), client (openai), http (httpx), url and limits of the running server."""
    import openai

    import tokenloom as tl
    from tokenloom.app.serve import BackgroundServer, ServeConfig, create_app
    from tokenloom.generation.scheduler import RuntimeLimits

    lm = tl.load(SERVED_MODEL, limits=RuntimeLimits(**SERVED_LIMITS))
    app = create_app(ServeConfig(model=SERVED_MODEL, **SERVED_LIMITS), loader=lambda: lm)
    with BackgroundServer(app) as server:
        server.wait_until_healthy()
        http = httpx.Client(base_url=server.url, trust_env=False, timeout=120)
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                               http_client=httpx.Client(trust_env=False, timeout=120))
        yield SimpleNamespace(lm=lm, client=client, http=http, url=server.url, limits=SERVED_LIMITS)
        http.close()
        client.close()
