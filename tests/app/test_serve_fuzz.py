"""Fuzzing the server with schemathesis (4.x) from its own OpenAPI schema, bounded.

Generated bodies, valid and invalid, go to a real server on 127.0.0.1 serving a tiny
random Llama: no answer may be a 5xx, and every answer must fit the documented
status codes, content types and response schemas.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

import tokenloom as tl  # noqa: E402
from tokenloom.app.serve import BackgroundServer, ServeConfig, create_app  # noqa: E402

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed(tiny_llama_dir):
    from tokenloom.generation.scheduler import RuntimeLimits

    lm = tl.load(str(tiny_llama_dir), limits=RuntimeLimits(max_running=4, max_queue=8))
    app = create_app(ServeConfig(model=str(tiny_llama_dir)), loader=lambda: lm)
    with BackgroundServer(app) as server:
        server.wait_until_healthy()
        yield server


@pytest.fixture(scope="module")
def session():
    with requests.Session() as s:
        s.trust_env = False  # loopback only: no proxy from the environment
        yield s


def _never_loads():
    raise FileNotFoundError("only the schema is needed here")


# The schema comes from the app's own models; the cases go to the live server.
schema = schemathesis.openapi.from_dict(create_app(ServeConfig(), loader=_never_loads).openapi())
schema.config.phases.coverage.enabled = False  # hundreds of cases per operation: too slow for every run


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_error_and_every_answer_fits_the_schema(case, fuzzed, session):
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = fuzzed.app.state.serve.name  # reach generation, not only the 404
    case.call_and_validate(base_url=fuzzed.url, session=session, checks=CHECKS)
