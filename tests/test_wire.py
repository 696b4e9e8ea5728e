"""``runyard serve``'s HTTP protocol (server/wire.py): what one loop turn writes to a connection
leaves in one segment, and nothing waits beyond its turn. A real uvicorn on 127.0.0.1 in a process
of its own, read with a raw socket that is already waiting when the answer is written: its first
``recv`` returns exactly what the first segment carried."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.gateway import free_port
from support.wire_app import BODY

PROTOCOL = "gathering"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``host:port`` of tests/support/wire_app.py served with ``PROTOCOL``, in a process of its own."""
    port = free_port()
    app = Path(__file__).parent / "support" / "wire_app.py"
    proc = subprocess.Popen([sys.executable, str(app), str(port), PROTOCOL])
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("tests/support/wire_app.py did not start") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _ask(server: str, path: str, extra: bytes = b"") -> socket.socket:
    host, port = server.split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), extra))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_an_answer_leaves_in_one_segment(server: str) -> None:
    for _ in range(100):  # with a write for the head and one for the body, some first reads hold the head only
        with _ask(server, "/json") as sock:
            first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"\r\n\r\n" + BODY), first


def test_under_load_an_answer_still_leaves_in_one_segment(server: str) -> None:
    """With another request in flight the writes wait for the loop turn's end, and go together."""
    with _ask(server, "/slow-body") as busy:
        busy.recv(65536)  # its head: its task is in flight for a while yet
        for _ in range(50):
            with _ask(server, "/json") as sock:
                first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"\r\n\r\n" + BODY), first


def test_a_head_is_not_held_back_for_a_body_that_comes_later(server: str) -> None:
    with _ask(server, "/slow-body") as sock:
        started = time.monotonic()
        first = sock.recv(65536)
        waited = time.monotonic() - started
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"late" not in first
        assert waited < 0.5, waited
        assert b"late" in _read_all_until(sock, b"0\r\n\r\n")


def test_a_stream_head_goes_with_its_first_event_and_later_events_are_not_held(server: str) -> None:
    """A request alone: its head leaves with the first event, and an event written after a pause
    is not held back for anything."""
    with _ask(server, "/events") as sock:
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"data: 0" in first, first
        assert b"data: last" not in first
        rest = _read_all_until(sock, b"0\r\n\r\n")
        assert b"data: last" in rest and (first + rest).count(b"data: ") == 4


def test_a_closing_connection_sends_its_answer_before_the_fin(server: str) -> None:
    with _ask(server, "/json", b"Connection: close\r\n") as sock:
        answer = _read_all(sock)  # to EOF: the server closes after answering
    assert answer.endswith(BODY) and b"connection: close" in answer.lower()


def _read_all_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
