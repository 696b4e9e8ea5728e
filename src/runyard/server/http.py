"""Small request/response helpers every route module shares."""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import InvalidRequestError, PayloadTooLargeError, RunyardError, ValidationError
from ..gateway import Gateway
from ..telemetry.ids import current_request_id

M = TypeVar("M", bound=BaseModel)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.scope["app"].state.gateway
    return gw


def caller_key_id(request: Request) -> str | None:
    """The id of the API key this request came with (set by the Guard; None without auth).
    Read off the scope: ``request.state`` builds a State wrapper on first use."""
    key_id: str | None = request.scope.get("state", {}).get("api_key_id")
    return key_id


def pending_admission(request: Request) -> Any:
    """The request's admission the guard left to its cache lookup (``services/limits.py``), or None."""
    return request.scope.get("state", {}).get("admission")


class JSONBytes(Response):
    """A response whose body is JSON already encoded (headers made directly: Starlette's generic
    header assembly was a visible share of a hot route's CPU)."""

    media_type = "application/json"

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        if headers:
            super().init_headers(headers)
            return
        self.raw_headers = [(b"content-length", b"%d" % len(self.body)), (b"content-type", b"application/json")]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONBytes(orjson.dumps(data), status_code=status, headers=headers)


def error_response(err: RunyardError) -> Response:
    headers = None
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        headers = {"Retry-After": str(max(1, math.ceil(retry_after)))}  # never early
    body = err.to_dict()
    request_id = current_request_id()
    if request_id is not None:
        body["error"]["request_id"] = request_id  # the response's X-Request-Id, to quote in a report
    return json_response(body, status=err.status or 500, headers=headers)


def header(scope: Scope, name: bytes) -> str | None:
    """One request header (``name`` lower-case; the last if repeated), from a dict of the ASGI
    scope's headers made once per request (Starlette's ``Headers`` scans in Python per lookup)."""
    headers = scope.get(_HEADER_MAP)
    if headers is None:
        headers = scope[_HEADER_MAP] = dict(scope["headers"])
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")


_HEADER_MAP = "runyard.headers"


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past ``server.max_body_bytes`` (checked while reading;
    a declared Content-Length over it is refused before the rest is read)."""
    limit = gateway(request).config.server.max_body_bytes
    receive = request.receive  # read here, not through Request.stream(): one coroutine less per chunk
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    body = message.get("body", b"")
    if len(body) > limit:
        raise PayloadTooLargeError(f"request body exceeds {limit} bytes", code="body_too_large")
    if message.get("more_body", False):  # more to come: check what was declared, then read on
        declared = header(request.scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes", code="body_too_large")
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"request body exceeds {limit} bytes", code="body_too_large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
    request._body = body  # what Request.body() would have kept: a later body() or stream() gets it
    return body


def parse_object(body: bytes) -> dict[str, Any]:
    """A JSON object from raw bytes; 400 ``invalid_json`` for anything else."""
    if not body:
        raise InvalidRequestError("request body is empty; send a JSON object", code="invalid_json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidRequestError(f"request body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object", code="invalid_json")
    return data


async def read_object(request: Request) -> dict[str, Any]:
    return parse_object(await read_body(request))


def validate(model: type[M], data: Any) -> M:
    """Validate into ``model``; a 422 listing each bad field otherwise."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as err:
        raise validation_error(err) from None


def validate_json(model: type[M], body: bytes) -> M:
    """Parse and validate raw JSON bytes in one pass (the fast path)."""
    try:
        return model.model_validate_json(body)
    except PydanticValidationError as err:
        if any(e["type"] == "json_invalid" for e in err.errors()):
            raise InvalidRequestError("request body is not valid JSON", code="invalid_json") from None
        raise validation_error(err) from None


def validation_error(err: PydanticValidationError) -> ValidationError:
    problems = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]} for e in err.errors()]
    if problems and all(p["field"] == "(body)" for p in problems):
        summary = problems[0]["message"]
    else:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return ValidationError(f"invalid request: {summary}", code="validation_error", details=problems)


class EventStream(Response):
    """A ``text/event-stream`` response: each chunk of ``events`` is sent as it comes.

    Starlette's ``StreamingResponse`` minus its anyio task group (6% of a stream's CPU at c=1,
    bench/README.md): one plain task waits for the client's ``http.disconnect`` and cancels
    the stream, which then ends quietly, as Starlette's does."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None
        sending, gone = True, False

        async def watch() -> None:
            nonlocal gone
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            except Exception:  # a server whose receive() fails: the stream just goes on
                return
            if sending:
                gone = True
                streaming.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            uncancel = getattr(streaming, "uncancel", None)  # Python 3.11+: the task is not cancelled after all
            if uncancel is not None:
                uncancel()
        finally:
            sending = False
            watcher.cancel()


def sse_event(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def sse_error(err: RunyardError) -> bytes:
    return sse_event(err.to_dict())


def idempotency_key(request: Request, body: dict[str, Any] | None = None) -> str | None:
    key = header(request.scope, b"idempotency-key")
    if body is not None:
        key = body.pop("idempotency_key", None) or key
    return key


async def idempotent(
    request: Request, key: str | None, raw: bytes, produce: Callable[[], Awaitable[Response]]
) -> Response:
    """Run ``produce`` once per Idempotency-Key (scoped to the caller's API key and path)."""
    if not key:
        return await produce()
    scope = f"{caller_key_id(request) or '-'}|{request.scope['path']}|{key}"

    async def answer() -> tuple[int, bytes]:
        resp = await produce()
        return resp.status_code, bytes(resp.body)

    status, body = await gateway(request).idempotency.run(scope, hashlib.sha256(raw).digest(), answer)
    return JSONBytes(body, status_code=status)
