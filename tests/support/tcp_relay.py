"""What the tests' TCP relays (:mod:`support.connect_proxy`, :mod:`support.redis_proxy`) share: a
threaded TCP server on 127.0.0.1 (a free port) whose connections a subclass handles, and
:func:`relay`, which passes bytes both ways between two sockets."""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from collections.abc import Callable
from typing import TypeVar

_S = TypeVar("_S", bound="RelayServer")


class RelayServer:
    """A thread per connection, each given to :meth:`handle`; ``port`` is the server's port."""

    def __init__(self) -> None:
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner.handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, client: socket.socket) -> None:
        """Serve one accepted connection (closed after this returns)."""
        raise NotImplementedError

    def start(self: _S) -> _S:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def relay(
    a: socket.socket, b: socket.socket, seen: Callable[[bool, bytes], None] | None = None, idle_s: float = 30
) -> None:
    """Relay bytes both ways until either side closes (or ``idle_s`` passes); ``seen(from_a, data)``
    is told of each chunk before it is passed on."""
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], idle_s)
            if not ready:
                return
            for src in ready:
                data = src.recv(65536)
                if not data:
                    return
                if seen is not None:
                    seen(src is a, data)
                (b if src is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()
