"""The HTTP core of the SDK: headers, idempotency keys and error mapping, written once."""

from __future__ import annotations

import asyncio
import copy
import json as stdlib_json
import logging
import os
import re
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import orjson

from runyard import __version__
from runyard.client._streaming import AsyncStream
from runyard.client._transports import (
    IDEMPOTENT_METHODS,
    RETRY_COUNT_HEADER,
    ASGITransport,
    RetryTransport,
    parse_retry_after,
)
from runyard.client.limits import RateLimitInfo, parse_rate_limit
from runyard.errors import (
    APITimeoutError,
    ConnectionError,
    InternalServerError,
    RateLimitError,
    RunyardError,
    error_for_status,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "AsyncAPIClient"]

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
CONNECT_HINT = (
    " — is a gateway running there? Start one with `runyard serve`, set RUNYARD_BASE_URL to where one runs,"
    " or run it in this process with Client.embedded()"
)
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2
IDEMPOTENCY_HEADER = "Idempotency-Key"
# A path the in-process call can hand to the app as it is (nothing to escape, no query).
_NOT_IN_PROCESS = frozenset({"accept-encoding", "connection"})  # transport headers: no meaning in process
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9/_.~:@!$&'()*+,;=-]*")
_RATE_HEADERS = (b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset", b"retry-after")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
logger = logging.getLogger("runyard.client")

LifespanFactory = Callable[[], AbstractAsyncContextManager[Any]]


class _Lifespan:
    """Run an app's lifespan context in one dedicated task (enter and exit in the same task,
    as anyio cancel scopes require), started on first use and stopped on close."""

    def __init__(self, factory: LifespanFactory) -> None:
        self._factory = factory
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        async with self._lock:
            if self._task is not None:
                return
            started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            stop = self._stop = asyncio.Event()

            async def run() -> None:
                try:
                    async with self._factory():
                        if not started.done():
                            started.set_result(None)
                        await stop.wait()
                except asyncio.CancelledError:
                    if not started.done():
                        started.cancel()
                    raise
                except BaseException as exc:
                    if started.done():
                        raise
                    started.set_exception(exc)

            task = asyncio.create_task(run())
            try:
                await started
            except BaseException:
                task.cancel()
                await asyncio.wait({task})
                raise
            self._task = task

    async def stop(self) -> None:
        async with self._lock:
            task, self._task = self._task, None
            if task is None or self._stop is None:
                return
            self._stop.set()
            await task


class AsyncAPIClient:
    """Owns an ``httpx.AsyncClient`` over ``RetryTransport(inner)``.

    ``transport`` is the inner transport (default ``httpx.AsyncHTTPTransport()``); pass a
    :class:`RetryTransport` to tune backoff yourself. ``lifespan`` (a factory of an async
    context manager) is entered before the first request and exited by :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        default_headers: Mapping[str, str] | None = None,
        lifespan: LifespanFactory | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("RUNYARD_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("RUNYARD_API_KEY")
        self.max_retries = max_retries
        if not isinstance(transport, RetryTransport):
            transport = RetryTransport(transport or httpx.AsyncHTTPTransport(), max_retries=max_retries)
        self.transport = transport
        headers = {"User-Agent": f"runyard-python/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(default_headers or {})
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout
            if isinstance(timeout, httpx.Timeout)
            else httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
        )
        self._lifespan = _Lifespan(lifespan) if lifespan is not None else None
        # Embedded mode: plain JSON calls go straight to the app (request(), _call_inprocess).
        self._inprocess = transport.transport if isinstance(transport.transport, ASGITransport) else None
        self._closed = False
        self._options: dict[str, Any] = {}  # per-call overrides of a with_options() view
        # X-RateLimit-Limit/Remaining/Reset and Retry-After of the last response that had them.
        self._rate_limit: tuple[str | None, str | None, str | None, str | None] | None = None

    def with_options(self, *, max_retries: int | None = None, timeout: float | httpx.Timeout | None = None) -> Self:
        """This client with other retry / timeout settings for the calls made through it (the
        connection pool is shared; close the original, not the view)::

            client.with_options(max_retries=5, timeout=120).workflows.execute("acme/flow", {...})
        """
        view = copy.copy(self)
        view._options = {**self._options, "view": True}
        if max_retries is not None:
            view._options["max_retries"] = max_retries
        if timeout is not None:
            view._options["timeout"] = timeout
        view._bind()
        return view

    def _bind(self) -> None:
        """(Re)create the resource objects on ``self`` (a subclass's; see :meth:`with_options`)."""

    # ------------------------------------------------------------------ requests

    def _headers(self, method: str, idempotency_key: str | None, idempotent_post: bool) -> dict[str, str]:
        if idempotency_key is not None:
            return {IDEMPOTENCY_HEADER: idempotency_key}
        if method.upper() == "POST" and idempotent_post:
            return {IDEMPOTENCY_HEADER: str(uuid.uuid4())}  # once per logical call: retries reuse it
        return {}

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, Any] | None,
        headers: dict[str, str],
        stream: bool,
        content: Any = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> httpx.Response:
        if self._closed:
            raise RuntimeError("client is closed")
        if self._lifespan is not None:
            await self._lifespan.start()
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if self._options:
            if "max_retries" in self._options:
                extensions = {"max_retries": self._options["max_retries"], **(extensions or {})}
            timeout = self._options.get("timeout", timeout)
        request = self._http.build_request(
            method,
            path,
            json=json,
            content=content,
            files=files,
            data=data,
            params=params,
            headers=headers,
            extensions=extensions,
            timeout=timeout,
        )
        try:
            response = await self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"{method} {request.url} timed out: {exc or type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            hint = CONNECT_HINT if isinstance(exc, httpx.ConnectError) else ""
            raise ConnectionError(f"{method} {request.url} failed: {exc or type(exc).__name__}{hint}") from exc
        h = response.headers
        limit = h.get("x-ratelimit-limit")
        if limit is not None or "x-ratelimit-remaining" in h or "x-ratelimit-reset" in h:
            self._rate_limit = (limit, h.get("x-ratelimit-remaining"), h.get("x-ratelimit-reset"), h.get("retry-after"))
        if response.is_success:
            return response
        try:
            await response.aread()
        except httpx.HTTPError:
            pass
        finally:
            await response.aclose()
        raise _error_from_response(response)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent_post: bool = True,
        idempotency_key: str | None = None,
        content: Any = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> Any:
        """Send a request and return the decoded JSON body; non-2xx raises a RunyardError.

        Besides ``json``: ``content`` (bytes or an async iterable of chunks, streamed) or
        ``files``/``data`` (multipart), extra ``headers``, and ``max_retries`` for this request
        (``0`` for a body that cannot be sent twice).
        """
        all_headers = self._headers(method, idempotency_key, idempotent_post)
        all_headers.update(headers or {})
        if (
            self._inprocess is not None
            and content is None
            and files is None
            and data is None
            and not any(v is not None for v in (params or {}).values())
            and _PLAIN_PATH.fullmatch(path)
        ):
            status, body = await self._call_inprocess(self._inprocess, method, path, json, all_headers, max_retries)
        else:
            response = await self._send(
                method,
                path,
                json=json,
                params=params,
                headers=all_headers,
                stream=False,
                content=content,
                files=files,
                data=data,
                extensions=None if max_retries is None else {"max_retries": max_retries},
            )
            status, body = response.status_code, response.content
        if status == 204 or not body:
            return None
        try:
            return orjson.loads(body)  # ~6x faster than json on large bodies (embeddings)
        except ValueError as exc:
            raise InternalServerError(
                f"unreadable response body from {method} {path}: {body[:200].decode(errors='replace')!r}",
                code="bad_response",
                status=status,
            ) from exc

    async def _call_inprocess(
        self,
        app: ASGITransport,
        method: str,
        path: str,
        json: Any,
        headers: dict[str, str],
        max_retries: int | None,
    ) -> tuple[int, bytes]:
        """``request`` in embedded mode: straight to the app, with the headers, retries, rate-limit
        bookkeeping and errors of the httpx path (``_send``), ~200 us less a call."""
        if self._closed:
            raise RuntimeError("client is closed")
        if self._lifespan is not None:
            await self._lifespan.start()
        merged = {k: v for k, v in self._http.headers.items() if k not in _NOT_IN_PROCESS}  # lower-case keys
        merged.update((k.lower(), v) for k, v in headers.items())  # as httpx merges: the call's own win
        raw = [(b"host", self._http.base_url.netloc)]
        raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items()]
        body = b""
        if json is not None:  # encoded as httpx encodes it
            body = stdlib_json.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            raw += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        elif method in _BODY_METHODS:
            raw.append((b"content-length", b"0"))
        timeout = self._options.get("timeout", self._http.timeout)
        read_timeout = timeout.read if isinstance(timeout, httpx.Timeout) else timeout
        retry = self.transport
        if max_retries is None:
            max_retries = int(self._options.get("max_retries", retry.max_retries))
        replayable = method in IDEMPOTENT_METHODS or any(k.lower() == "idempotency-key" for k in headers)
        attempt = 0
        while True:
            sent = [*raw, (RETRY_COUNT_HEADER.encode(), str(attempt).encode())] if attempt else raw
            try:
                status, answer_headers, answer = await app.call(method, path, sent, body, read_timeout)
            except httpx.TimeoutException as exc:
                raise APITimeoutError(f"{method} {self.base_url}{path} timed out: {exc}") from exc
            except httpx.TransportError as exc:
                raise ConnectionError(f"{method} {self.base_url}{path} failed: {exc}") from exc
            found = {k.lower().decode(): v.decode("latin-1") for k, v in answer_headers if k.lower() in _RATE_HEADERS}
            if found.keys() - {"retry-after"}:
                limit, remaining, reset, after = (found.get(name.decode()) for name in _RATE_HEADERS)
                self._rate_limit = (limit, remaining, reset, after)
            if 200 <= status < 300:
                return status, answer
            delay = None
            if status in retry.retry_statuses:
                delay = retry.delay_for(status, httpx.Headers(answer_headers), attempt, max_retries, replayable)
            if delay is None:
                raise _error_from_response(httpx.Response(status, headers=answer_headers, content=answer))
            logger.debug("retrying %s %s after %d in %.2fs", method, path, status, delay)
            attempt += 1
            await asyncio.sleep(delay)

    async def stream(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        parse: Callable[[dict[str, Any]], T],
        idempotency_key: str | None = None,
        stream_class: type[AsyncStream[Any]] = AsyncStream,
    ) -> AsyncStream[T]:
        """Send a request whose answer is SSE; the initial response is checked like ``request``."""
        headers = self._headers(method, idempotency_key, True)
        headers["Accept"] = "text/event-stream"
        response = await self._send(method, path, json=json, params=None, headers=headers, stream=True)
        return stream_class(response, parse)

    async def raw(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request and return the unread, streaming response (the caller closes it);
        non-2xx raises a RunyardError. For downloads: ``async for chunk in r.aiter_bytes()``."""
        all_headers = self._headers(method, None, False)
        all_headers.update(headers or {})
        return await self._send(method, path, json=None, params=params, headers=all_headers, stream=True)

    def get_rate_limit_info(self) -> RateLimitInfo | None:
        """The rate limit from the last response's ``X-RateLimit-*`` headers (None before any)."""
        return parse_rate_limit(self._rate_limit)

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close connections, then exit the embedded app's lifespan (if any); a
        :meth:`with_options` view leaves them to the client it came from."""
        if self._closed or self._options.get("view"):
            return
        self._closed = True
        try:
            await self._http.aclose()
        finally:
            if self._lifespan is not None:
                await self._lifespan.stop()

    async def __aenter__(self) -> Self:
        if self._lifespan is not None:
            await self._lifespan.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _error_from_response(response: httpx.Response) -> RunyardError:
    status = response.status_code
    code: str | None = None
    message = ""
    details: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        message = str(err.get("message") or "")
        details = err.get("details")
    elif isinstance(err, str):
        message = err
    if not message:
        text = response.text.strip() if response.content else ""
        message = text[:500] or f"HTTP {status} {response.reason_phrase}".strip()
    exc = error_for_status(status, code, message, details)
    if isinstance(exc, RateLimitError):
        exc.retry_after = parse_retry_after(response.headers)
    return exc
