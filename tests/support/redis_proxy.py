"""A TCP relay in front of the test Redis that counts round trips: a round trip starts each time
a client sends after its connection last carried a reply (a pipeline is one; pub/sub pushes and
the replies to one request are not counted apart)."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

from support.tcp_relay import RelayServer, relay


class RoundTripCounter(RelayServer):
    """``url``: a ``redis://`` URL that reaches ``upstream_url`` through the relay."""

    def __init__(self, upstream_url: str) -> None:
        super().__init__()
        target = urlsplit(upstream_url)
        self._upstream = (target.hostname or "127.0.0.1", target.port or 6379)
        self.round_trips = 0
        self._lock = threading.Lock()
        self.url = f"redis://127.0.0.1:{self.port}{target.path or '/0'}"

    def handle(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self._upstream, timeout=5)
        except OSError:
            return
        replied = True  # the next bytes from the client start a round trip

        def seen(from_client: bool) -> None:
            nonlocal replied
            if from_client and replied:
                with self._lock:
                    self.round_trips += 1
            replied = not from_client

        relay(client, server, seen, idle_s=60)
