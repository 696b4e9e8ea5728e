"""TCP relays in front of the test Redis: :class:`RoundTripCounter` counts round trips (a round
trip starts each time a client sends after its connection last carried a reply; a pipeline is
one; pub/sub pushes and the replies to one request are not counted apart) and the commands sent,
by name; :class:`SlowLink` holds each request for a while, as a distant replica's link would;
:class:`CutLink` can be cut (its connections dropped, new ones closed at once) and mended;
:class:`ReplyDropper` lets a request through and drops the connection instead of its reply."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit

import hiredis

from support.tcp_relay import RelayServer, relay


class RedisRelay(RelayServer):
    """``url``: a ``redis://`` URL that reaches ``upstream_url`` through the relay."""

    def __init__(self, upstream_url: str) -> None:
        super().__init__()
        target = urlsplit(upstream_url)
        self._upstream = (target.hostname or "127.0.0.1", target.port or 6379)
        self.url = f"redis://127.0.0.1:{self.port}{target.path or '/0'}"

    def connect(self) -> socket.socket | None:
        """A connection to the upstream Redis (None when it refuses)."""
        try:
            return socket.create_connection(self._upstream, timeout=5)
        except OSError:
            return None


class RoundTripCounter(RedisRelay):
    """Counts round trips and commands (see the module's docstring)."""

    def __init__(self, upstream_url: str) -> None:
        super().__init__(upstream_url)
        self.round_trips = 0
        self.commands: dict[str, int] = {}  # command name -> how many were sent
        self._lock = threading.Lock()

    def handle(self, client: socket.socket) -> None:
        if (server := self.connect()) is None:
            return
        replied = True  # the next bytes from the client start a round trip
        commands = hiredis.Reader()  # the client's commands are RESP arrays too

        def seen(from_client: bool, data: bytes) -> None:
            nonlocal replied
            if from_client:
                commands.feed(data)
                with self._lock:
                    self.round_trips += replied
                    while (command := commands.gets()) is not False:
                        name = command[0].decode().upper()
                        self.commands[name] = self.commands.get(name, 0) + 1
            replied = not from_client

        relay(client, server, seen, idle_s=60)


class SlowLink(RedisRelay):
    """``delay_s`` added to every request on its way to Redis (replies come straight back)."""

    def __init__(self, upstream_url: str, delay_s: float) -> None:
        super().__init__(upstream_url)
        self.delay_s = delay_s

    def handle(self, client: socket.socket) -> None:
        if (server := self.connect()) is None:
            return

        def seen(from_client: bool, _data: bytes) -> None:
            if from_client:
                time.sleep(self.delay_s)

        relay(client, server, seen, idle_s=60)


class CutLink(RedisRelay):
    """Reaches Redis until :meth:`cut`, which drops every connection and closes new ones at
    once, until :meth:`mend`."""

    def __init__(self, upstream_url: str) -> None:
        super().__init__(upstream_url)
        self._down = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def cut(self) -> None:
        with self._lock:
            self._down = True
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def mend(self) -> None:
        with self._lock:
            self._down = False

    def handle(self, client: socket.socket) -> None:
        with self._lock:
            if self._down:
                return
            self._open.add(client)
        try:
            if (server := self.connect()) is not None:
                relay(client, server, idle_s=60)
        finally:
            with self._lock:
                self._open.discard(client)


class ReplyDropper(RedisRelay):
    """After :meth:`arm` with ``marker``: the next request containing it reaches Redis (and runs),
    and its connection is dropped instead of passing the reply back (once)."""

    def __init__(self, upstream_url: str) -> None:
        super().__init__(upstream_url)
        self._marker: bytes | None = None
        self.dropped = 0
        self._lock = threading.Lock()

    def arm(self, marker: bytes) -> None:
        with self._lock:
            self._marker = marker

    def handle(self, client: socket.socket) -> None:
        if (server := self.connect()) is None:
            return
        doomed = False

        def seen(from_client: bool, data: bytes) -> None:
            nonlocal doomed
            with self._lock:
                if from_client and self._marker is not None and self._marker in data:
                    self._marker, doomed = None, True
                elif not from_client and doomed:
                    self.dropped += 1
                    raise OSError("reply dropped")

        relay(client, server, seen, idle_s=60)
