"""What the mock upstreams (:mod:`support.openai_mock`, :mod:`support.anthropic_mock`) share.

* :class:`ThreadedMockServer`: a real aiohttp HTTP server on 127.0.0.1 that runs in a
  background thread with its own event loop (usable from sync tests and from async tests on
  any loop), with a FIFO queue of scripted behaviours and a record of every request.
  Subclasses provide the request handler ``_handle``, the error body ``_error_body`` and
  the URL suffix ``url_suffix``.
* The scripted behaviours (:class:`Behaviour` and its subclasses) and their factory ``B``.
* Helpers for building answers: :func:`object_for`, :func:`split_words`, :func:`split_n`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from aiohttp import web

__all__ = [
    "DISCONNECTED",
    "B",
    "Behaviour",
    "Delay",
    "DropMidStream",
    "Hang",
    "Malformed",
    "Reply",
    "Status",
    "ThreadedMockServer",
    "object_for",
    "split_n",
    "split_words",
]

# Errors a write to a client that went away can raise.
DISCONNECTED: tuple[type[BaseException], ...] = (ConnectionError, RuntimeError)


# --------------------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Behaviour:
    """Base class of scripted behaviours; each applies to exactly one request."""


@dataclass(frozen=True)
class Status(Behaviour):
    """Answer with HTTP ``code``.

    ``body``: dict/list -> JSON, str/bytes -> sent as is, None -> the mock's own error
    shape (OpenAI- or Anthropic-shaped).
    ``headers`` are added to the response (e.g. ``{"retry-after": "1"}``).
    """

    code: int
    body: Any = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Hang(Behaviour):
    """Accept the request and send nothing for ``seconds``, then answer normally.

    Only the handling task sleeps: other requests are served meanwhile, and ``stop()``
    releases hung requests at once.
    """

    seconds: float = 60.0


@dataclass(frozen=True)
class Delay(Behaviour):
    """Sleep ``seconds`` before answering normally."""

    seconds: float


@dataclass(frozen=True)
class DropMidStream(Behaviour):
    """Start a 200 answer, then abort the TCP connection (no finish chunk, no ``[DONE]``).

    Stream requests get the role chunk and ``after_chunks`` content chunks (fewer if
    the answer has fewer); non-stream requests get half of the JSON body (with a
    Content-Length for the whole).
    """

    after_chunks: int = 2


@dataclass(frozen=True)
class Malformed(Behaviour):
    """200 with body ``{not json`` (stream requests: an SSE ``data: {not json`` event
    followed by ``data: [DONE]``)."""


@dataclass(frozen=True)
class Reply(Behaviour):
    """A fixed chat answer (stream or not).

    ``tool_calls``: list of ``{"name": str, "arguments": dict | str, "id": str (optional)}``
    or already OpenAI-shaped ``{"id", "type": "function", "function": {...}}`` dicts.
    ``finish_reason`` defaults to ``"tool_calls"`` when there are tool calls, else ``"stop"``.
    On non-chat routes the default behaviour applies.
    """

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    usage: dict[str, int] | None = field(default=None)


class B:
    """Factory namespace for behaviours: ``mock.script(B.status(500), B.reply("ok"))``."""

    @staticmethod
    def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Status:
        return Status(code, body, headers)

    @staticmethod
    def hang(seconds: float = 60.0) -> Hang:
        return Hang(seconds)

    @staticmethod
    def delay(seconds: float) -> Delay:
        return Delay(seconds)

    @staticmethod
    def drop_mid_stream(after_chunks: int = 2) -> DropMidStream:
        return DropMidStream(after_chunks)

    @staticmethod
    def malformed() -> Malformed:
        return Malformed()

    @staticmethod
    def reply(
        content: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        finish_reason: str | None = None,
        usage: dict[str, int] | None = None,
    ) -> Reply:
        return Reply(content, tool_calls, finish_reason, usage)


# --------------------------------------------------------------------------- answer helpers


def _value_for(schema: Any, depth: int = 0) -> Any:
    """A simple value of the schema's type."""
    if not isinstance(schema, dict) or depth > 8:
        return "x"
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _value_for((non_null or options)[0], depth + 1)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ is None and "properties" in schema:
        typ = "object"
    if typ == "integer":
        return 1
    if typ == "number":
        return 1.0
    if typ == "boolean":
        return True
    if typ == "array":
        return []
    if typ == "null":
        return None
    if typ == "object":
        return object_for(schema, depth + 1)
    return "x"


def object_for(schema: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """An object filling the schema's required properties with typed placeholders."""
    props = schema.get("properties") or {}
    required = schema.get("required") or []
    return {name: _value_for(props.get(name, {}), depth) for name in required}


def split_words(text: str) -> list[str]:
    """Word-sized pieces whose concatenation is ``text``."""
    pieces = re.findall(r"\s*\S+", text)
    rest = text[len("".join(pieces)) :]
    if rest:
        if pieces:
            pieces[-1] += rest
        else:
            pieces = [rest]
    return pieces


def split_n(text: str, n: int) -> list[str]:
    """``text`` in (at most) ``n`` pieces of equal size; ``[""]`` for an empty text."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


# --------------------------------------------------------------------------- server

_S = TypeVar("_S", bound="ThreadedMockServer")


class ThreadedMockServer:
    """A mock upstream HTTP server in a background thread; see the module docstring.

    Subclasses implement ``_handle`` (every method and path is routed to it; it records
    the request and takes its behaviour with :meth:`_record`) and ``_error_body`` (the body
    of a :class:`Status` without one), and set ``url_suffix`` (appended to
    ``http://127.0.0.1:PORT`` to make :attr:`url`) and ``thread_name``.
    """

    url_suffix: ClassVar[str] = ""
    thread_name: ClassVar[str] = "mock-server"

    def __init__(self) -> None:
        self.url: str = ""
        self.port: int = 0
        self.requests: list[dict[str, Any]] = []
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._counter = 0
        self.ssl_context: ssl.SSLContext | None = None  # set before start() to serve HTTPS on "localhost"

    # ---- public API

    def start(self: _S) -> _S:
        name = type(self).__name__
        if self._thread is not None:
            raise RuntimeError(f"{name} already started")
        self._ready.clear()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{name} did not start within 10 s")
        if self._start_error is not None:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError(f"{name} failed to start") from self._start_error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None
        self._loop = None

    def script(self, *behaviours: Behaviour) -> None:
        for b in behaviours:
            if not isinstance(b, Behaviour):
                raise TypeError(f"not a Behaviour: {b!r}")
        with self._lock:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    @property
    def last_request(self) -> dict[str, Any]:
        with self._lock:
            if not self.requests:
                raise LookupError("no request received")
            return self.requests[-1]

    @property
    def pending(self) -> int:
        """Number of scripted behaviours not yet consumed."""
        with self._lock:
            return len(self._queue)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- loop thread

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:  # report to start()
            self._start_error = exc
            self._ready.set()
            loop.close()
            self._loop = None
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._shutdown())
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _setup(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        origin = f"https://localhost:{self.port}" if self.ssl_context else f"http://127.0.0.1:{self.port}"
        self.url = f"{origin}{self.url_suffix}"

    async def _shutdown(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short by stop()."""
        assert self._stopping is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # ---- request handling (shared parts)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    @staticmethod
    def _error_body(code: int, message: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def _record(self, request: web.Request, body: Any, consume: bool = True) -> tuple[Behaviour | None, int]:
        """Record the request; return the next scripted behaviour (None if the queue is empty
        or ``consume`` is false) and the request's sequence number (from 1)."""
        with self._lock:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "headers": {k.lower(): v for k, v in request.headers.items()},
                    "json": body,
                }
            )
            behaviour = self._queue.popleft() if consume and self._queue else None
            self._counter += 1
            return behaviour, self._counter

    def _status_response(self, b: Status) -> web.Response:
        headers = dict(b.headers or {})
        if b.body is None:
            return web.json_response(self._error_body(b.code), status=b.code, headers=headers)
        if isinstance(b.body, (dict, list)):
            return web.json_response(b.body, status=b.code, headers=headers)
        data = b.body.encode() if isinstance(b.body, str) else bytes(b.body)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "text/plain"
        return web.Response(status=b.code, body=data, headers=headers)
