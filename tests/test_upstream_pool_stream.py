"""The upstream pool's streamed answers (``ConnectionPool.stream``) against a real HTTP server on
127.0.0.1 that writes its body in pieces, as an SSE upstream does."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from runyard.providers.pool import ConnectionPool

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
Script = Callable[[asyncio.StreamWriter, int], Awaitable[bool]]  # writer, request number -> keep going


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class ScriptedServer:
    """Reads each request, then runs ``script`` to write the answer as it likes."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.closed_by_client = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))[15:])
                self.requests.append(head + await reader.readexactly(length))
                if not await self.script(writer, len(self.requests)):
                    break
        except asyncio.IncompleteReadError as err:
            if not err.partial:
                self.closed_by_client += 1  # EOF between requests: the client closed the connection
        except ConnectionError:
            self.closed_by_client += 1
        finally:
            writer.close()

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


def make_pool(port: int, read_timeout: float = 2.0) -> ConnectionPool:
    return ConnectionPool(f"http://127.0.0.1:{port}", {}, connect_timeout=2, read_timeout=read_timeout, limit=4)


async def read_body(pool: ConnectionPool) -> list[bytes]:
    async with pool.stream("/v1/chat", b"{}", b"Accept: text/event-stream\r\n") as answer:
        assert answer.status == 200
        return [piece async for piece in _pieces(answer.read)]


async def _pieces(read: Callable[[], Awaitable[bytes]]) -> AsyncIterator[bytes]:
    while piece := await read():
        yield piece


async def test_pieces_arrive_as_written_and_the_connection_is_reused() -> None:
    go_on = asyncio.Event()

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(HEAD + chunk(b"data: one\n\n"))
        await writer.drain()
        await go_on.wait()  # the second piece only after the client has read the first
        writer.write(chunk(b"data: two\n\n") + b"0\r\n\r\n")
        go_on.clear()
        return True

    async with ScriptedServer(script) as server:
        pool = make_pool(server.port)
        for _ in range(2):
            async with pool.stream("/v1/chat", b'{"stream":true}', b"Accept: text/event-stream\r\n") as answer:
                assert answer.status == 200 and answer.headers["content-type"] == "text/event-stream"
                assert await answer.read() == b"data: one\n\n"
                go_on.set()
                assert await answer.read() == b"data: two\n\n"
                assert await answer.read() == b""
        assert server.connections == 1  # read to its end, the connection went back to the pool
        assert b"Accept: text/event-stream\r\n" in server.requests[0]
        pool.close()


async def test_a_stream_left_early_closes_its_connection() -> None:
    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(HEAD + chunk(b"data: one\n\n"))
        await writer.drain()
        if n == 1:
            for _ in range(250):  # keep-alive comments while the client listens, never the end
                await asyncio.sleep(0.02)
                writer.write(chunk(b": ping\n\n"))
                await writer.drain()
        writer.write(b"0\r\n\r\n")
        return True

    async with ScriptedServer(script) as server:
        pool = make_pool(server.port)
        async with pool.stream("/v1/chat", b"{}") as answer:
            assert await answer.read() == b"data: one\n\n"
        for _ in range(100):
            if server.closed_by_client:
                break
            await asyncio.sleep(0.02)
        assert server.closed_by_client == 1  # the upstream sees the stream abandoned at once
        assert await read_body(pool) == [b"data: one\n\n"]  # the next stream on a new connection
        assert server.connections == 2
        pool.close()


async def test_an_error_status_is_read_whole() -> None:
    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        body = b'{"error":{"message":"slow down"}}'
        writer.write(b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    async with ScriptedServer(script) as server:
        pool = make_pool(server.port)
        async with pool.stream("/v1/chat", b"{}") as answer:
            assert answer.status == 429 and answer.headers["retry-after"] == "3"
            assert await answer.read_all() == b'{"error":{"message":"slow down"}}'
        pool.close()


async def test_an_upstream_dropping_mid_stream_is_an_error_not_an_end() -> None:
    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(HEAD + chunk(b"data: one\n\n"))
        await writer.drain()
        return False  # closes the connection without the last chunk

    async with ScriptedServer(script) as server:
        pool = make_pool(server.port)
        with pytest.raises(ConnectionResetError):
            await read_body(pool)
        pool.close()


async def test_an_idle_upstream_times_out_mid_stream() -> None:
    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(HEAD + chunk(b"data: one\n\n"))
        await writer.drain()
        await asyncio.sleep(3)
        return False

    async with ScriptedServer(script) as server:
        pool = make_pool(server.port, read_timeout=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            await read_body(pool)
        assert loop.time() - started < 2
        pool.close()


async def test_a_slow_reader_holds_the_upstream_back_and_loses_nothing() -> None:
    piece = bytes(range(256)) * 256  # 64 KiB
    total = 256  # 16 MiB: more than the loopback socket buffers hold
    written = 0

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        nonlocal written
        writer.write(HEAD)
        for _ in range(total):
            writer.write(chunk(piece))
            await writer.drain()
            written += 1
        writer.write(b"0\r\n\r\n")
        return True

    async with ScriptedServer(script) as server:
        pool = make_pool(server.port)
        async with pool.stream("/v1/chat", b"{}") as answer:
            await asyncio.sleep(0.5)  # the reader is busy: the pool must stop reading the socket
            assert written < total
            digest, size = hashlib.sha256(), 0
            while data := await answer.read():
                digest.update(data)
                size += len(data)
        assert size == total * len(piece)
        assert digest.hexdigest() == hashlib.sha256(piece * total).hexdigest()
        assert server.connections == 1
        pool.close()


async def test_a_connection_the_upstream_closed_is_not_reused() -> None:
    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(HEAD + chunk(b"data: %d\n\n" % n) + b"0\r\n\r\n")
        await writer.drain()
        return False  # closes each connection after one answer, as an upstream's idle timeout does

    async with ScriptedServer(script) as server:
        pool = make_pool(server.port)
        assert await read_body(pool) == [b"data: 1\n\n"]
        await asyncio.sleep(0.1)  # the server's close reaches the idle connection
        assert await read_body(pool) == [b"data: 2\n\n"]
        assert server.connections == 2
        pool.close()
