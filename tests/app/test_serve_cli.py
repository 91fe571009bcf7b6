"""`tokenloom serve` as a user runs it: a subprocess on 127.0.0.1 that answers, then stops on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tokenloom(*args: str) -> list[str]:
    return [sys.executable, "-m", "tokenloom", *args]


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "port must be in [0, 65535], got 70000"),
    (["--precision", "fp8"], "precision must be one of auto, native, float32, bfloat16, got 'fp8'"),
    (["--max-running", "0"], "max_running must be in [1, ∞), got 0"),
])
def test_serve_refuses_bad_options_with_one_line(args, message):
    result = subprocess.run(tokenloom("serve", *args), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip() == f"tokenloom: error: {message}"


def test_serve_answers_health_then_completions_and_stops_on_sigterm(tiny_llama_dir):
    port = free_port()
    command = tokenloom("serve", "--model", str(tiny_llama_dir), "--port", str(port), "--max-running", "2",
                        "--api-key", "k", "--log-level", "warning")
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30) as http:
            deadline, status = time.monotonic() + 180, None
            while status != 200 and time.monotonic() < deadline and server.poll() is None:
                try:
                    status = http.get("/health").status_code
                except httpx.TransportError:  # not listening yet
                    pass
                time.sleep(0.1)
            assert status == 200, "the server never became healthy"
            body = {"model": str(tiny_llama_dir), "prompt": "The cat", "max_tokens": 3, "temperature": 0}
            assert http.post("/v1/completions", json=body).status_code == 401
            answer = http.post("/v1/completions", json=body, headers={"Authorization": "Bearer k"})
            assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] <= 3
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert server.returncode in (0, -signal.SIGTERM) and "Traceback" not in output, output
