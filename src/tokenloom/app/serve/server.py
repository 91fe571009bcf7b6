"""Run the app under uvicorn: `tokenloom serve` calls `run(ServeConfig(...))`.

`BackgroundServer` runs the same app in a thread of the current process, on
127.0.0.1 and a free port, for tests and notebooks:

    with BackgroundServer(create_app(config)) as server:
        httpx.get(server.url + "/health")
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time

from tokenloom.app.serve.config import LOOPBACK, ServeConfig
from tokenloom.errors import TokenloomError


def run(config: ServeConfig, log_level: str = "info") -> None:
    """Serve until interrupted; the model loads in the background while /health says 503."""
    import uvicorn

    from tokenloom.app.serve.api import create_app
    from tokenloom.model.device import resolve

    resolve(config.device)  # a device that cannot be used is refused before the server listens
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level=log_level,
                timeout_graceful_shutdown=5)


class BackgroundServer:
    """uvicorn serving `app` from a daemon thread; port 0 picks a free port (bound before the thread starts)."""

    def __init__(self, app, host: str = LOOPBACK, port: int = 0, log_level: str = "warning",
                 start_timeout: float = 30.0):
        self.app, self.host, self.port = app, host, port
        self.log_level, self.start_timeout = log_level, start_timeout
        self.server, self.thread = None, None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BackgroundServer":
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=self.log_level, timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name=f"uvicorn-{self.port}")
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise TokenloomError(f"the server on {self.url} did not start within {self.start_timeout:g} s")
            time.sleep(0.01)
        return self

    def wait_until_healthy(self, timeout: float = 300.0) -> "BackgroundServer":
        """Poll GET /health until it answers 200 (the model has loaded); raise if it failed or took too long."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self._get("/health")
            if status == 200:
                return self
            if b'"failed"' in body or time.monotonic() > deadline:
                raise TokenloomError(f"{self.url}/health answered {status}: {body.decode(errors='replace')}")
            time.sleep(0.05)

    def _get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
