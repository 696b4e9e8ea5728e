"""The keep-alive upstream pool against a real raw HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from runyard.providers import pool as pool_module
from runyard.providers.pool import Answer, ConnectionPool

Handler = Callable[[bytes, int], bytes | None]  # request bytes, connection's request number -> raw response


class RawServer:
    """Answers each request with whatever ``handler`` returns (None: close without answering)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
                )
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                served += 1
                answer = self.handler(head + body, served)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def make_pool(port: int, read_timeout: float = 2.0) -> ConnectionPool:
    return ConnectionPool(
        f"http://127.0.0.1:{port}/v1",
        {"Authorization": "Bearer k"},
        connect_timeout=2,
        read_timeout=read_timeout,
        limit=4,
    )


@pytest.fixture
async def echo_server() -> AsyncIterator[RawServer]:
    async with RawServer(lambda req, n: ok()) as server:
        yield server


async def test_keep_alive_reuses_one_connection(echo_server: RawServer) -> None:
    pool = make_pool(echo_server.port)
    for _ in range(5):
        answer = await pool.post("/v1/chat/completions", b'{"a":1}')
        assert isinstance(answer, Answer) and (answer.status, answer.body) == (200, b'{"ok":true}')
        assert answer.headers == {"content-type": "application/json", "content-length": "11"}
    assert echo_server.connections == 1
    sent = echo_server.requests[0]
    assert sent.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"Authorization: Bearer k\r\n" in sent and b"Accept-Encoding: identity\r\n" in sent
    assert sent.endswith(b'\r\n\r\n{"a":1}')
    pool.close()


async def test_concurrent_calls_open_several_connections(echo_server: RawServer) -> None:
    pool = make_pool(echo_server.port)
    answers = await asyncio.gather(*(pool.post("/x", b"{}") for _ in range(12)))
    assert all(a.status == 200 for a in answers)
    assert 1 <= echo_server.connections <= 4  # the pool's limit
    pool.close()


async def test_slots_queue_in_order_and_a_cancelled_waiter_frees_nothing() -> None:
    release = asyncio.Event()
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))[15:])
                seen.append(await reader.readexactly(length))
                await release.wait()
                writer.write(ok())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = ConnectionPool(f"http://127.0.0.1:{port}", {}, connect_timeout=2, read_timeout=5, limit=1)
    first = asyncio.create_task(pool.post("/x", b'"1"'))
    second = asyncio.create_task(pool.post("/x", b'"2"'))
    third = asyncio.create_task(pool.post("/x", b'"3"'))
    await asyncio.sleep(0.1)
    assert seen == [b'"1"']  # one slot: the others queue
    second.cancel()
    release.set()
    assert (await first).status == 200 and (await third).status == 200
    assert second.cancelled()
    assert seen == [b'"1"', b'"3"']  # the cancelled caller never sent
    assert (await asyncio.wait_for(pool.post("/x", b'"4"'), 2)).status == 200  # the slot came back
    pool.close()
    server.close()


async def test_stale_keep_alive_connection_is_retried_once() -> None:
    # The server answers one request per connection, then closes the next without answering.
    async with RawServer(lambda req, n: ok() if n == 1 else None) as server:
        pool = make_pool(server.port)
        assert (await pool.post("/x", b"{}")).status == 200
        await asyncio.sleep(0.05)
        assert (await pool.post("/x", b"{}")).status == 200
        assert server.connections == 2
        pool.close()


async def test_chunked_response_and_connection_close() -> None:
    chunked = (
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )
    async with RawServer(lambda req, n: chunked) as server:
        pool = make_pool(server.port)
        assert (await pool.post("/x", b"{}")).body == b'{"a":1}'
        assert (await pool.post("/x", b"{}")).body == b'{"a":1}'
        assert server.connections == 2, "Connection: close is honoured"
        pool.close()


async def test_read_timeout_and_truncated_body() -> None:
    async with RawServer(lambda req, n: b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial') as server:
        pool = make_pool(server.port, read_timeout=0.3)
        with pytest.raises(asyncio.TimeoutError):
            await pool.post("/x", b"{}")
        pool.close()


async def test_read_timeout_counts_silence_not_the_whole_response() -> None:
    """A body that trickles in (4 pieces, 0.15 s apart: 0.45 s in all) under a 0.3 s read
    timeout arrives whole; a 0.4 s silence in the middle of one times out."""
    body = b'{"pieces":"' + b"x" * 30 + b'"}'
    pieces = [ok(body)[i : i + 30] for i in range(0, len(ok(body)), 30)]

    def serve_with_gap(gap: float) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
            for i, piece in enumerate(pieces):
                if i:
                    await asyncio.sleep(gap if i == 2 else 0.15)
                writer.write(piece)
                await writer.drain()
            writer.close()

        return serve

    assert len(pieces) >= 4
    for gap, times_out in ((0.15, False), (0.4, True)):
        server = await asyncio.start_server(serve_with_gap(gap), "127.0.0.1", 0)
        pool = make_pool(server.sockets[0].getsockname()[1], read_timeout=0.3)
        if times_out:
            with pytest.raises(asyncio.TimeoutError):
                await pool.post("/x", b"{}")
        else:
            assert (await pool.post("/x", b"{}")).body == body
        pool.close()
        server.close()


async def test_response_size_cap() -> None:
    async with RawServer(lambda req, n: ok(b"x" * 5000)) as server:
        pool = ConnectionPool(
            f"http://127.0.0.1:{server.port}", {}, connect_timeout=2, read_timeout=2, limit=1, max_response_bytes=1000
        )
        with pytest.raises(pool_module.ResponseTooLarge):
            await pool.post("/x", b"{}")
        pool.close()


async def test_unreachable_upstream() -> None:
    pool = make_pool(1)  # nothing listens on port 1
    with pytest.raises(OSError):
        await pool.post("/x", b"{}")
