"""httpx transports: an in-process ASGI transport that streams, and a retrying wrapper.

Both are ``httpx.AsyncBaseTransport`` so they stack: ``RetryTransport(ASGITransport(app))``
for embedded mode, ``RetryTransport(httpx.AsyncHTTPTransport())`` over the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import httpx

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_COUNT_HEADER",
    "RETRY_STATUSES",
    "ASGITransport",
    "RetryTransport",
    "parse_retry_after",
]

logger = logging.getLogger("runyard.client")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRY_COUNT_HEADER = "x-runyard-retry-count"
DISCONNECT_GRACE_S = 0.05  # an app that does not react to http.disconnect is cancelled after this


# --------------------------------------------------------------------------- ASGI


class _ASGIExchange:
    """One request/response exchange with the app, running in its own task."""

    def __init__(self, app: ASGIApp, scope: Scope, request: httpx.Request) -> None:
        self.app = app
        self.scope = scope
        self.request = request
        self.started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = asyncio.get_running_loop().create_future()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
        self.complete = False  # the app sent its last body chunk
        self.finished = asyncio.Event()  # response complete or abandoned: receive() -> disconnect
        self._body = request.stream.__aiter__() if isinstance(request.stream, httpx.AsyncByteStream) else None
        self._body_done = self._body is None
        self.task: asyncio.Task[None] = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not self.started.done():
                self.started.cancel()
            raise
        except BaseException as exc:
            if not self.started.done():
                self.started.set_exception(exc)
                return
            if self.complete:  # like a server: the response is out, log what came after it
                logger.error("ASGI app raised after completing its response", exc_info=exc)
                return
            raise
        finally:
            if not self.started.done():
                self.started.set_exception(RuntimeError("ASGI app returned without starting a response"))

    async def receive(self) -> Message:
        if self.finished.is_set():
            return {"type": "http.disconnect"}
        if not self._body_done and self._body is not None:
            try:
                chunk = await self._body.__anext__()
            except StopAsyncIteration:
                self._body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": bytes(chunk), "more_body": True}
        await self.finished.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started.done():
                raise RuntimeError("ASGI app sent http.response.start twice")
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            self.started.set_result((int(message["status"]), headers))
        elif kind == "http.response.body":
            if not self.started.done():
                raise RuntimeError("ASGI app sent a body before http.response.start")
            if self.finished.is_set():
                return  # the client went away; drop the rest
            body = bytes(message.get("body", b""))
            if body:
                await self.queue.put(body)
            if not message.get("more_body", False):
                self.complete = True
                self.finished.set()

    async def wait_started(self, timeout: float | None) -> tuple[int, list[tuple[bytes, bytes]]]:
        try:
            waiters: set[asyncio.Future[Any]] = {self.started, self.task}
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await self.cancel()
            raise
        if self.started.done():
            return self.started.result()  # re-raises an app exception from before the start
        await self.cancel()
        raise httpx.ReadTimeout("ASGI app did not start a response in time", request=self.request)

    async def next_chunk(self, timeout: float | None) -> bytes | None:
        """The next body chunk; ``None`` at the end of the body."""
        while True:
            if not self.queue.empty():
                return self.queue.get_nowait()
            if self.complete:
                return None
            if self.task.done():
                exc = None if self.task.cancelled() else self.task.exception()
                raise httpx.RemoteProtocolError(
                    f"ASGI app ended without completing its response: {exc!r}", request=self.request
                ) from exc
            getter = asyncio.ensure_future(self.queue.get())
            waiters: set[asyncio.Future[Any]] = {getter, self.task}
            try:
                done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter in done:
                return getter.result()
            if not done:
                raise httpx.ReadTimeout("ASGI app sent no data in time", request=self.request)

    async def cancel(self) -> None:
        """Signal a disconnect and, if the response is unfinished, cancel the app."""
        self.finished.set()
        if not self.complete and not self.task.done():
            await asyncio.wait({self.task}, timeout=DISCONNECT_GRACE_S)  # let it see http.disconnect
            if not self.task.done():
                self.task.cancel()
                await asyncio.wait({self.task})
        if self.task.done() and not self.task.cancelled():
            self.task.exception()  # retrieved: it was a cancelled exchange, or already reported


class _WholeExchange:
    """One exchange read to its end, without httpx objects: ``ended`` resolves to the status,
    headers and whole body once the app sends its last chunk (its task may go on with work after
    the response, as under a server), or fails with what stopped the app before that."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.ended: asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes]] = (
            asyncio.get_running_loop().create_future()
        )
        self.over = asyncio.Event()  # ended, one way or another: receive() -> disconnect
        self.ended.add_done_callback(lambda _: self.over.set())

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not self.ended.done():
                self.ended.set_exception(httpx.ReadError("the in-process exchange was cancelled"))
            raise
        except BaseException as exc:
            if not self.ended.done():
                self.ended.set_exception(exc)
            elif not self.ended.cancelled() and self.ended.exception() is None:
                logger.error("ASGI app raised after completing its response", exc_info=exc)
        finally:
            if not self.ended.done():
                self.ended.set_exception(RuntimeError("ASGI app returned without completing its response"))

    async def receive(self) -> Message:
        body, self._body = self._body, None
        if body is not None:
            return {"type": "http.request", "body": body, "more_body": False}
        await self.over.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.ended.done():
            return  # the caller went away: drop the rest
        kind = message["type"]
        if kind == "http.response.start":
            if self.status:
                raise RuntimeError("ASGI app sent http.response.start twice")
            self.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif kind == "http.response.body":
            if not self.status:
                raise RuntimeError("ASGI app sent a body before http.response.start")
            body = message.get("body", b"")
            if body:
                self.chunks.append(bytes(body))
            if not message.get("more_body", False):
                self.ended.set_result((self.status, self.headers, b"".join(self.chunks)))


class _ASGIResponseStream(httpx.AsyncByteStream):
    def __init__(self, exchange: _ASGIExchange, read_timeout: float | None) -> None:
        self._exchange = exchange
        self._timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self._exchange.next_chunk(self._timeout)) is not None:
            yield chunk

    async def aclose(self) -> None:
        await self._exchange.cancel()


class ASGITransport(httpx.AsyncBaseTransport):
    """Call an ASGI app in-process, streaming its response as it is produced.

    Unlike ``httpx.ASGITransport`` the response is returned as soon as the app sends
    ``http.response.start``; body chunks follow through a queue. Closing the response
    early signals ``http.disconnect`` and cancels the app. An exception raised by the
    app before it starts a response propagates to the caller.
    """

    def __init__(
        self,
        app: ASGIApp | Any,
        *,
        root_path: str = "",
        client: tuple[str, int] = ("127.0.0.1", 123),
        server: tuple[str, int] = ("127.0.0.1", 80),
    ) -> None:
        self.app = app
        self.root_path = root_path
        self.client = client
        self.server = server
        self._exchanges: set[_ASGIExchange] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # whole exchanges (call) still running

    def _scope(self, request: httpx.Request) -> Scope:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.url.scheme,
            "path": unquote(request.url.path),
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "root_path": self.root_path,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "server": self.server,
            "client": self.client,
        }

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("read")
        exchange = _ASGIExchange(self.app, self._scope(request), request)
        self._exchanges.add(exchange)
        exchange.task.add_done_callback(lambda _: self._exchanges.discard(exchange))
        status, headers = await exchange.wait_started(timeout)
        return httpx.Response(status, headers=headers, stream=_ASGIResponseStream(exchange, timeout))

    async def call(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes, timeout: float | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One whole exchange without httpx objects: ``(status, headers, body)``. The SDK sends its
        plain JSON calls this way in embedded mode (``path``: no query, nothing to escape); going
        through ``httpx.AsyncClient`` cost ~200 us more a call (bench/README.md, "Figures
        2026-12-06, second session")."""
        exchange = _WholeExchange(body)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": self.root_path,
            "headers": headers,
            "server": self.server,
            "client": self.client,
        }
        task = asyncio.create_task(exchange.run(self.app, scope))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        ended = exchange.ended
        expiry = None
        if timeout is not None:

            def expire() -> None:
                if not ended.done():
                    ended.set_exception(httpx.ReadTimeout("ASGI app did not complete its response in time"))

            expiry = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await ended
        finally:
            if expiry is not None:
                expiry.cancel()
            if not ended.done() or ended.cancelled() or ended.exception() is not None:
                task.cancel()  # the caller gave up (or timed out): stop the app

    async def aclose(self) -> None:
        """Cancel unfinished exchanges; let finished ones (background tasks) complete."""
        for exchange in list(self._exchanges):
            if exchange.complete:
                await asyncio.wait({exchange.task})
            else:
                await exchange.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))


# --------------------------------------------------------------------------- retries


def parse_retry_after(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        with contextlib.suppress(ValueError):
            if math.isfinite(seconds := float(ms) / 1000):
                return max(0.0, seconds)
    value = headers.get("retry-after")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryTransport(httpx.AsyncBaseTransport):
    """Retry connection errors and 429/5xx answers with jittered exponential backoff.

    A request is retried when its method is idempotent or it carries an
    ``Idempotency-Key``; otherwise only when it surely never reached the server
    (connect errors) or was refused with 429. A Retry-After beyond ``max_retry_after`` is
    not waited for: the response is returned. The decision is made on the status before
    the response is returned, so a streaming body handed to the caller is never replayed.
    ``request.extensions["max_retries"]`` overrides ``max_retries`` per request.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        *,
        max_retries: int = 2,
        initial_backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 60.0,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
    ) -> None:
        self.transport = transport
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.retry_statuses = retry_statuses

    def retry_delay(self, attempt: int, headers: httpx.Headers | None = None) -> float:
        """Seconds before retry ``attempt`` (0-based): Retry-After if given, else full jitter."""
        if headers is not None:
            hinted = parse_retry_after(headers)
            if hinted is not None:
                return min(hinted, self.max_retry_after)
        return random.uniform(0, min(self.max_backoff, self.initial_backoff * 2**attempt))

    @staticmethod
    def _replayable(request: httpx.Request) -> bool:
        return request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers

    def delay_for(
        self, status: int, headers: httpx.Headers, attempt: int, max_retries: int, replayable: bool
    ) -> float | None:
        """Seconds to wait before retrying an answer with ``status`` after ``attempt`` retries,
        or None to return it (also the in-process calls': ``AsyncAPIClient.request``)."""
        if attempt >= max_retries or status not in self.retry_statuses or not (replayable or status == 429):
            return None
        hinted = parse_retry_after(headers)
        if hinted is not None and hinted > self.max_retry_after:
            return None  # e.g. a spending limit until the period ends: waiting is pointless
        return self.retry_delay(attempt, headers)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        max_retries = int(request.extensions.get("max_retries", self.max_retries))
        if max_retries > 0 and not isinstance(request.stream, httpx.ByteStream):
            await request.aread()  # buffer a streamed body so it can be sent again
        replayable = self._replayable(request)
        attempt = 0
        while True:
            if attempt:
                request.headers[RETRY_COUNT_HEADER] = str(attempt)
            try:
                response = await self.transport.handle_async_request(request)
            except httpx.TransportError as exc:
                safe = replayable or isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt >= max_retries or not safe:
                    raise
                delay = self.retry_delay(attempt)
                logger.debug("retrying %s %s after %r in %.2fs", request.method, request.url, exc, delay)
            else:
                status = response.status_code
                wait = self.delay_for(status, response.headers, attempt, max_retries, replayable)
                if wait is None:
                    return response
                delay = wait
                await _discard(response)
                logger.debug("retrying %s %s after %d in %.2fs", request.method, request.url, status, delay)
            attempt += 1
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        await self.transport.aclose()


async def _discard(response: httpx.Response) -> None:
    """Drain (so the connection can be reused) and close a response we will not return."""
    try:
        await response.aread()
    except httpx.HTTPError:
        pass
    finally:
        await response.aclose()
