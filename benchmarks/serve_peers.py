"""The servers the serving benchmark compares, each run as a subprocess on loopback.

A `ServerSpec` says how to start one server, what every request to it carries
beyond the OpenAI fields (how it is told to ignore EOS and to report usage), and how
its prefix cache is turned off for the prefix measurement. `running(spec)` starts it
on a free port of 127.0.0.1, waits until it answers, yields its base URL and always
stops it (SIGTERM to the process group it created, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOST = "127.0.0.1"
MODEL = "smollm2-135m-instruct"
LLAMA_SERVER_DIR = Path.home() / ".cache" / "tokenloom-peers" / "llama-server"
READY_LIMIT_S = 300.0  # loading, compiling kernels; bounded so a stuck server is a skip, not a hang
USAGE = {"stream_options": {"include_usage": True}}

# Flags that are easy to change per server, kept apart from the plumbing.
OURS_FLAGS = ["--max-running", "64"]
OURS_NO_PREFIX_CACHE = ["--no-prefix-cache"]
LLAMA_SERVER_FLAGS = ["-c", "16384", "-np", "16", "-cb"]


@dataclass
class ServerSpec:
    name: str
    argv: list[str]  # without the port, which `running` appends
    env: dict[str, str] = field(default_factory=dict)
    env_unset: list[str] = field(default_factory=list)  # variables the server must not inherit
    body: dict = field(default_factory=dict)  # extra request fields
    prefix_off_flags: list[str] | None = None  # restart with these to turn the prefix cache off
    prefix_off_body: dict | None = None  # or send these fields to turn it off per request
    single_sequence: bool = False  # one request at a time: the shorter time limit applies
    missing: str | None = None  # why it cannot run here, if it cannot


def ours() -> ServerSpec:
    exe = Path(sys.executable).with_name("tokenloom")
    argv = [str(exe), "serve", "--model", MODEL, "--host", HOST, *OURS_FLAGS]
    missing = None if exe.exists() else f"{exe} is not installed (pip install -e .)"
    return ServerSpec("ours", argv, body={"ignore_eos": True, **USAGE},
                      prefix_off_flags=OURS_NO_PREFIX_CACHE, env_unset=["TOKENLOOM_API_KEY"], missing=missing)


def llama_server(binary: Path, model: Path, threads: int) -> ServerSpec:
    argv = [str(binary), "-m", str(model), "-t", str(threads), "-tb", str(threads), *LLAMA_SERVER_FLAGS, "--host", HOST]
    missing = None if binary.exists() else f"{binary} is absent (build it with /work/shared/tools/build-llama-server)"
    return ServerSpec("llama-server", argv, env={"LD_LIBRARY_PATH": str(binary.parent)},
                      body={"ignore_eos": True, **USAGE, "cache_prompt": True},
                      prefix_off_body={"cache_prompt": False}, missing=missing)


def llama_cpp_python(model: Path, threads: int, eos_ids: list[int]) -> ServerSpec:
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--n_threads", str(threads),
            "--n_threads_batch", str(threads), "--interrupt_requests", "False", "--host", HOST]
    needed = ["llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"]
    absent = [name for name in needed if importlib.util.find_spec(name) is None]
    missing = f"not importable: {', '.join(absent)} (pip install 'llama-cpp-python[server]')" if absent else None
    # It has no ignore_eos, and its min_tokens holds back one end token of the several that stop
    # llama.cpp: a bias of -100 on all of them keeps every request to max_tokens. Without
    # --interrupt_requests False a waiting request would end the running one early.
    return ServerSpec("llama-cpp-python", argv, body={"logit_bias": {str(i): -100.0 for i in eos_ids}},
                      single_sequence=True, missing=missing)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_ready(base: str, proc: subprocess.Popen, log: Path) -> float:
    """Seconds until GET /health (or /v1/models where /health is unknown) answers 200."""
    start = time.perf_counter()
    path = "/health"
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        while time.perf_counter() - start < READY_LIMIT_S:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with status {proc.returncode}:\n{_tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                status = http.get(base + path).status_code
                if status == 200:
                    return time.perf_counter() - start
                if status == 404 and path == "/health":
                    path = "/v1/models"
            time.sleep(0.5)
    raise RuntimeError(f"not ready after {READY_LIMIT_S:.0f} s:\n{_tail(log)}")


def served_model(base: str) -> str:
    """The id GET /v1/models lists first (servers differ: a name, a path), else MODEL."""
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, IndexError):
        return httpx.get(base + "/v1/models", timeout=10.0, trust_env=False).json()["data"][0]["id"]
    return MODEL


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the group this process leads, SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@contextlib.contextmanager
def running(spec: ServerSpec, extra_flags: list[str] = ()):
    """Start `spec` on a free loopback port; yield its base URL; stop it whatever happens."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix=f"serve-{spec.name}-", suffix=".log")[1])
    argv = [*spec.argv, "--port", str(port), *extra_flags]
    env = {name: value for name, value in os.environ.items() if name not in spec.env_unset}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**env, **spec.env}, start_new_session=True)
    try:
        base = f"http://{HOST}:{port}"
        seconds = wait_ready(base, proc, log)
        print(f"  {spec.name} ready in {seconds:.1f} s (pid {proc.pid}, log {log})")
        yield base
    finally:
        stop(proc)
