"""The tests' one loopback HTTP server: a real server on 127.0.0.1 (a free port), in a thread.

``LoopbackServer(app)`` serves an ASGI app with uvicorn; ``LoopbackServer(Handler)`` serves a
``http.server.BaseHTTPRequestHandler`` class with ``ThreadingHTTPServer``. Use it as a context
manager (or ``start()`` / ``stop()``); ``url`` is its base URL once started.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import uvicorn

__all__ = ["LoopbackServer"]


class LoopbackServer:
    """An ASGI app (uvicorn; ``lifespan`` "on" runs its startup and shutdown) or a request handler
    class (``ThreadingHTTPServer``) on 127.0.0.1, served from a daemon thread."""

    def __init__(
        self,
        app: Any,
        *,
        lifespan: str = "off",
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        name: str = "loopback",
    ) -> None:
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._uvicorn: uvicorn.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._sock: socket.socket | None = None
        if isinstance(app, type) and issubclass(app, BaseHTTPRequestHandler):
            self._http = ThreadingHTTPServer(("127.0.0.1", 0), app)
            port = self._http.server_address[1]
            self.thread = threading.Thread(target=self._http.serve_forever, name=name, daemon=True)
        else:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(("127.0.0.1", 0))
            port = self._sock.getsockname()[1]
            config = uvicorn.Config(
                app, lifespan=lifespan, log_level="warning", loop="asyncio", timeout_graceful_shutdown=2
            )
            self._uvicorn = uvicorn.Server(config)
            self.thread = threading.Thread(
                target=self._uvicorn.run, kwargs={"sockets": [self._sock]}, name=name, daemon=True
            )
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> LoopbackServer:
        """Start serving; for an ASGI app, wait until uvicorn has started (RuntimeError if it does not)."""
        self.thread.start()
        server = self._uvicorn
        if server is None:
            return self
        deadline = time.monotonic() + self.start_timeout
        while not server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and wait (up to ``stop_timeout``) for the thread to end."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self.thread.is_alive():
            self.thread.join(self.stop_timeout)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
