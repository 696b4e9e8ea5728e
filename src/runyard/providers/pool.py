"""A keep-alive HTTP/1.1 connection pool for the gateway's JSON calls upstream.

Chosen by measurement: on the 2-core reference machine aiohttp's client spent ~130 µs of CPU per
call at concurrency 32, this pool ~25 µs, and the client was the largest share of the gateway's
CPU (bench/README.md). It does exactly one thing: POST a body and read one response (Content-Length
or chunked, parsed by httptools — llhttp, Node's parser), over plain TCP or TLS, with connect and
read timeouts and TCP_NODELAY; whole (:meth:`ConnectionPool.post`) or as it arrives
(:meth:`ConnectionPool.stream`, for SSE: aiohttp's stream reader took 19% of a stream's CPU).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httptools

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
STREAM_BUFFER_BYTES = 256 * 1024  # a streamed body waiting for its reader beyond this pauses the socket


@dataclass(slots=True)
class Answer:
    status: int
    raw_headers: list[tuple[bytes, bytes]]  # as received
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        """Lower-cased names; made when asked (only error answers are read for headers)."""
        return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in self.raw_headers}


class StreamedAnswer:
    """An answer's status and headers, its body read as it arrives (:meth:`ConnectionPool.stream`)."""

    __slots__ = ("_conn", "raw_headers", "status")

    def __init__(self, head: Answer, conn: _Connection) -> None:
        self.status, self.raw_headers, self._conn = head.status, head.raw_headers, conn

    @property
    def headers(self) -> dict[str, str]:
        return Answer(self.status, self.raw_headers, b"").headers

    async def read(self) -> bytes:
        """What arrived since the last read, waiting for some; b"" at the end of the body."""
        return await self._conn.read()

    async def read_all(self, limit: int = MAX_RESPONSE_BYTES) -> bytes:
        """The rest of the body (an error answer's), at most ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        while size <= limit and (piece := await self._conn.read()):
            parts.append(piece)
            size += len(piece)
        return b"".join(parts)[:limit]


class StaleConnection(ConnectionError):
    """A reused keep-alive connection closed before answering (safe to retry once on a new one)."""


class ResponseTooLarge(ValueError):
    pass


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float, max_bytes: int) -> None:
        self._loop = loop  # kept: each asyncio.get_running_loop() costs a getpid() system call
        self._max_bytes = max_bytes
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._timeout = read_timeout
        self._future: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_data = 0.0  # loop time of the last bytes received (the read timeout is idle time)
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._got_bytes = False
        self.reused = False
        # A streamed body (request(stream=True)): the head resolves the future, chunks wait here.
        self._streaming = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._ended = False
        self._error: BaseException | None = None
        self._reader: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._future is not None and not self._future.done():
            if self.reused and not self._got_bytes:
                self._fail(StaleConnection("keep-alive connection closed by the upstream"))
            else:
                self._fail(ConnectionResetError("upstream closed the connection before the response ended"))
        elif self._streaming and not self._ended:
            self._fail(ConnectionResetError("upstream closed the connection before the stream ended"))

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._timer is not None:
            self._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionError("unexpected protocol upgrade"))
        except httptools.HttpParserError as err:
            self._fail(ValueError(f"malformed HTTP response: {err}"))

    # -- httptools callbacks --------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        future = self._future
        if self._streaming and future is not None and not future.done():
            future.set_result(Answer(self._parser.get_status_code(), self._headers, b""))

    def on_body(self, body: bytes) -> None:
        if self._streaming:
            self._chunks.append(body)
            self._buffered += len(body)
            if self._buffered > STREAM_BUFFER_BYTES and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()  # the reader is behind: let TCP push back upstream
            self._wake()
            return
        self._size += len(body)
        if self._size > self._max_bytes:
            self._fail(ResponseTooLarge(f"upstream response exceeds {self._max_bytes} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._streaming:
            self._ended = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._wake()
            if not self._parser.should_keep_alive():
                self.closed = True
            return
        future = self._future
        if future is not None and not future.done():
            future.set_result(Answer(self._parser.get_status_code(), self._headers, b"".join(self._body)))
        if not self._parser.should_keep_alive():
            self.closed = True

    # -- requests -----------------------------------------------------------
    def request(self, payload: bytes, *, stream: bool = False) -> asyncio.Future[Answer]:
        """Send; the future holds the whole answer, or with ``stream`` its head (then :meth:`read`)."""
        assert self.transport is not None
        loop = self._loop
        self._future = loop.create_future()
        self._headers, self._body, self._size, self._got_bytes = [], [], 0, False
        self._streaming = stream
        if stream:
            self._chunks.clear()
            self._buffered, self._paused, self._ended, self._error = 0, False, False, None
        self._last_data = loop.time()
        self._timer = loop.call_later(self._timeout, self._expire)
        self.transport.write(payload)
        return self._future

    async def read(self) -> bytes:
        """The streamed body's bytes received since the last read (b"" at its end); waits for some."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            self._reader = self._loop.create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self._last_data = self._loop.time()  # the pause was the reader's, not the upstream's idleness
            self.transport.resume_reading()
        return data

    @property
    def ended(self) -> bool:
        """The streamed body was read to its end (the connection may serve another request)."""
        return self._ended and not self._chunks

    def _wake(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._future = None
        self._streaming = False
        self._chunks.clear()

    def _expire(self) -> None:
        """The read timer: fail if nothing came for the whole timeout, else wait out the rest."""
        idle = 0.0 if self._paused else self._loop.time() - self._last_data
        if idle < self._timeout:
            self._timer = self._loop.call_later(self._timeout - idle, self._expire)
            return
        self._fail(asyncio.TimeoutError())

    def _fail(self, err: BaseException) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_exception(err)
        elif self._streaming and self._error is None and not self._ended:
            self._error = err
            self._wake()
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections to one origin; at most ``limit`` at once (callers queue beyond)."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
        limit: int,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        proxy: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_bytes = max_response_bytes
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream base_url must be http(s)://host[:port]/path, got {base_url!r}")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        self._proxy = _proxy_address(proxy) if proxy else None
        fixed = {"Host": parts.netloc, "Content-Type": "application/json", "Accept-Encoding": "identity", **headers}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: deque[_Connection] = deque()
        self._limit = limit
        self._busy = 0  # requests holding a connection slot
        self._waiters: deque[asyncio.Future[None]] = deque()  # callers queued for a slot, in order
        self._all: set[_Connection] = set()

    def _payload(self, path: str, body: bytes, extra_headers: bytes) -> bytes:
        return b"POST %s HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n%s" % (
            path.encode(), self._head, extra_headers, len(body), body,
        )  # fmt: skip

    async def post(self, path: str, body: bytes, extra_headers: bytes = b"") -> Answer:
        """``extra_headers``: raw ``Name: value\\r\\n`` lines for this request (``traceparent``)."""
        payload = self._payload(path, body, extra_headers)
        if not self._take_slot():
            await self._wait_for_slot()
        try:
            conn, answer = await self._exchange(payload, stream=False)
            self._give_back(conn, reusable=not conn.closed)
            return answer
        finally:
            self._release_slot()

    @contextlib.asynccontextmanager
    async def stream(self, path: str, body: bytes, extra_headers: bytes = b"") -> AsyncIterator[StreamedAnswer]:
        """POST; yields once the head is in, the body then read as it arrives. The connection goes
        back to the pool when the body was read to its end, else (left early, failed) it is closed."""
        payload = self._payload(path, body, extra_headers)
        if not self._take_slot():
            await self._wait_for_slot()
        try:
            conn, head = await self._exchange(payload, stream=True)
            try:
                yield StreamedAnswer(head, conn)
            finally:
                self._give_back(conn, reusable=conn.ended and not conn.closed)
        finally:
            self._release_slot()

    async def _exchange(self, payload: bytes, *, stream: bool) -> tuple[_Connection, Answer]:
        """Send ``payload`` on a pooled connection, once more on a new one if a kept-alive one turns
        out closed; the connection and its answer (``stream``: the answer's head)."""
        for attempt in (0, 1):
            conn = await self._checkout(fresh=attempt > 0)
            try:
                return conn, await conn.request(payload, stream=stream)
            except BaseException as err:
                self._give_back(conn, reusable=False)
                if not isinstance(err, StaleConnection):
                    raise
        raise ConnectionResetError("upstream closed two connections in a row")

    def _give_back(self, conn: _Connection, *, reusable: bool) -> None:
        """The request on ``conn`` is over: keep it for the next one, or close it."""
        conn.finish()
        if reusable:
            self._idle.append(conn)
        else:
            self._discard(conn)

    def _take_slot(self) -> bool:
        """One of the ``limit`` slots, if one is free and nobody waits (counted inline:
        asyncio.Semaphore's acquire and release ran ~60 bytecodes of Python per call)."""
        if self._busy < self._limit and not self._waiters:
            self._busy += 1
            return True
        return False

    async def _wait_for_slot(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # a slot was handed to us as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def _release_slot(self) -> None:
        """Hand the slot to the first caller still waiting, else free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: ``_busy`` is unchanged
                return
        self._busy -= 1

    async def _checkout(self, *, fresh: bool) -> _Connection:
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
            self._discard(conn)
        loop = asyncio.get_running_loop()
        read_timeout, max_bytes = self._read_timeout, self._max_bytes
        _, conn = await asyncio.wait_for(self._connect(loop, read_timeout, max_bytes), self._connect_timeout)
        self._all.add(conn)
        return conn

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, read_timeout: float, max_bytes: int
    ) -> tuple[asyncio.BaseTransport, _Connection]:
        """A new connection: direct, or through the proxy's CONNECT tunnel (TLS inside it)."""

        def factory() -> _Connection:
            return _Connection(loop, read_timeout, max_bytes)

        hostname = self.host if self.tls else None
        if self._proxy is None:
            return await loop.create_connection(factory, self.host, self.port, ssl=self._ssl, server_hostname=hostname)
        sock = await _tunnel(loop, self._proxy, self.host, self.port)
        return await loop.create_connection(factory, sock=sock, ssl=self._ssl, server_hostname=hostname)

    def _discard(self, conn: _Connection) -> None:
        self._all.discard(conn)
        if conn.transport is not None and not conn.transport.is_closing():
            conn.transport.close()

    def close(self) -> None:
        for conn in list(self._all):
            self._discard(conn)
        self._idle.clear()


def _proxy_address(proxy: str) -> tuple[str, int, str]:
    """(host, port, the CONNECT's Proxy-Authorization line: credentials in the URL, or "")."""
    parts = urlsplit(proxy)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// proxies are supported, got {proxy!r}")
    auth = ""
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode()}\r\n"
    return parts.hostname, parts.port or 80, auth


async def _tunnel(loop: asyncio.AbstractEventLoop, proxy: tuple[str, int, str], host: str, port: int) -> socket.socket:
    """A socket to ``host:port`` through an HTTP CONNECT proxy (the caller bounds the time)."""
    infos = await loop.getaddrinfo(proxy[0], proxy[1], type=socket.SOCK_STREAM)
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, address)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        await loop.sock_sendall(sock, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{proxy[2]}\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk or len(reply) > 65536:
                raise ConnectionError("proxy closed the connection during CONNECT")
            reply += chunk
        first = reply.split(b"\r\n", 1)[0]
        status = first.split()
        if len(status) < 2 or status[1] != b"200":
            raise ConnectionError(f"proxy refused CONNECT {target}: {first!r}")
    except BaseException:
        sock.close()
        raise
    return sock
