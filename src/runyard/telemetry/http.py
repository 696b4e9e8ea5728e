"""The HTTP edge of telemetry, around every request (hot routes included): a request id
(kept from a well-formed ``X-Request-Id``, else made) on the response and in the context,
the request's metrics, its access-log line, and a server span continuing the caller's W3C
``traceparent`` when tracing is on."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from . import tracing
from .ids import REQUEST_ID_HEADER, RequestInfo, current_request, request_id_from
from .logs import AccessLog
from .metrics import Metrics
from .tracing import Span

ASGICall = Callable[[Scope, Receive, Send], Awaitable[None]]
RouteOf = Callable[[Scope], str]

UNMATCHED = "unmatched"


class Exchange:
    """One request's telemetry between :meth:`HttpTelemetry.begin` and :meth:`HttpTelemetry.end`."""

    __slots__ = ("id_header", "info", "span", "started", "status", "token")

    def __init__(self, started: float, info: RequestInfo, token: Token[RequestInfo | None], span: Span) -> None:
        self.started = started
        self.info = info
        self.token = token
        self.span = span
        self.status = 500  # until an answer starts
        self.id_header = (REQUEST_ID_HEADER, info.request_id.encode())


class HttpTelemetry:
    """A request's telemetry: ``begin`` it, answer, ``end`` it (the app's hot routes, which add
    ``id_header`` to the response they build), or ``serve(scope, receive, send, app)`` around
    any ASGI app (every other route: ``send`` is wrapped to add the header and see the status).

    ``route_of`` names the route template a served scope matched (label values are templates,
    never raw paths); ``access_log`` None: no access log."""

    def __init__(self, metrics: Metrics | None, access_log: AccessLog | None, route_of: RouteOf) -> None:
        self.metrics = metrics
        self.access_log = access_log
        self.route_of = route_of

    def begin(self, scope: Scope) -> Exchange:
        """The request id (the caller's when well formed) in the context; the server span open."""
        started = time.perf_counter()
        raw_id = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                raw_id = value
        info = RequestInfo(request_id_from(raw_id))
        token = current_request.set(info)
        if tracing.enabled():
            span = tracing.span(scope["method"], _server_attrs(scope, info), kind="server", parent=_parent(scope))
            span.__enter__()
        else:
            span = tracing.NOOP
        return Exchange(started, info, token, span)

    def end(self, exchange: Exchange, scope: Scope, route: str, exc: BaseException | None = None) -> None:
        """Close the span, then count the request and write its access-log line."""
        status = exchange.status
        span = exchange.span
        if span is not tracing.NOOP:
            span.rename(f"{scope['method']} {route}")
            span.set("http.route", route)
            span.set("http.response.status_code", status)
            span.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
        current_request.reset(exchange.token)
        seconds = time.perf_counter() - exchange.started
        if self.metrics is not None:
            self.metrics.observe_request(route, status, seconds)
        if self.access_log is not None:
            key_id = scope.get("state", {}).get("api_key_id")
            self.access_log.line(scope["method"], scope["path"], status, seconds, exchange.info, key_id)

    def refused(self, body: bytes) -> None:
        """Count a 429 / 402 answer's body if one of our limits gave it (see :func:`limit_of`)."""
        if self.metrics is not None:
            limit = limit_of(body)
            if limit is not None:
                self.metrics.observe_rate_limited(limit)

    async def serve(self, scope: Scope, receive: Receive, send: Send, app: ASGICall) -> None:
        exchange = self.begin(scope)
        id_header = exchange.id_header

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            elif exchange.status in (429, 402) and message["type"] == "http.response.body":
                self.refused(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        except BaseException as exc:
            self.end(exchange, scope, self.route_of(scope), exc)
            raise
        self.end(exchange, scope, self.route_of(scope))


def _parent(scope: Scope) -> Any:
    if not tracing.enabled():
        return None
    carrier = {}
    for name, value in scope["headers"]:
        if name in (b"traceparent", b"tracestate"):
            carrier[name.decode()] = value.decode("latin-1")
    return tracing.extract(carrier) if carrier else None


def _server_attrs(scope: Scope, info: RequestInfo) -> dict[str, Any] | None:
    if not tracing.enabled():
        return None
    return {"http.request.method": scope["method"], "url.path": scope["path"], "runyard.request_id": info.request_id}


# Our own limits' refusals (services/limits.py), told apart from an upstream's 429 by their code.
_LIMIT_CODES = {"RATE_LIMIT_EXCEEDED", "USAGE_LIMIT_EXCEEDED"}


def limit_of(body: bytes) -> str | None:
    """Which limit refused a 429 (or Sim's 402) answer: rpm_sync, rpm_async, tpm or spend (None: not a
    limit's). Reads ``{"error": {"code", "message"}}`` and Sim's legacy ``{"error": "...", "code"}``."""
    try:
        answer = orjson.loads(body)
        error = answer.get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if isinstance(error, str):
        error = {"code": answer.get("code"), "message": error}
    if not isinstance(error, dict):
        return None
    code, message = error.get("code"), str(error.get("message", ""))
    if code not in _LIMIT_CODES:
        return None
    if code == "USAGE_LIMIT_EXCEEDED":
        return "spend"
    if message.startswith("token limit"):
        return "tpm"
    return "rpm_async" if " async requests" in message else "rpm_sync"
