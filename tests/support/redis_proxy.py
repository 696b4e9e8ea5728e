"""A TCP relay in front of the test Redis that counts round trips: a round trip starts each time
a client sends after its connection last carried a reply (a pipeline is one; pub/sub pushes and
the replies to one request are not counted apart)."""

from __future__ import annotations

import socket
import socketserver
import threading
from urllib.parse import urlsplit

from support.connect_proxy import relay


class RoundTripCounter:
    """``url``: a ``redis://`` URL that reaches ``upstream_url`` through the relay."""

    def __init__(self, upstream_url: str) -> None:
        target = urlsplit(upstream_url)
        upstream = (target.hostname or "127.0.0.1", target.port or 6379)
        self.round_trips = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                client: socket.socket = self.request
                try:
                    server = socket.create_connection(upstream, timeout=5)
                except OSError:
                    return
                owner._relay(client, server)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"redis://127.0.0.1:{self.server.server_address[1]}{target.path or '/0'}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        replied = True  # the next bytes from the client start a round trip

        def seen(from_client: bool) -> None:
            nonlocal replied
            if from_client and replied:
                with self._lock:
                    self.round_trips += 1
            replied = not from_client

        relay(client, server, seen, idle_s=60)

    def start(self) -> RoundTripCounter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
