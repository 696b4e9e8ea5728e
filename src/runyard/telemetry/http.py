"""The HTTP edge of telemetry, around every request (hot routes included): a request id
(kept from a well-formed ``X-Request-Id``, else made) on the response and in the context,
the request's metrics, its access-log line, and a server span continuing the caller's W3C
``traceparent`` when tracing is on."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from . import tracing
from .ids import REQUEST_ID_HEADER, RequestInfo, current_request, request_id_from
from .logs import AccessLog
from .metrics import Metrics

ASGICall = Callable[[Scope, Receive, Send], Awaitable[None]]
RouteOf = Callable[[Scope], str]

UNMATCHED = "unmatched"


class HttpTelemetry:
    """``serve(scope, receive, send, app)`` runs ``app`` under the request's telemetry.

    ``route_of`` names the route template a served scope matched (label values are templates,
    never raw paths); ``access_log`` None: no access log."""

    def __init__(self, metrics: Metrics | None, access_log: AccessLog | None, route_of: RouteOf) -> None:
        self.metrics = metrics
        self.access_log = access_log
        self.route_of = route_of

    async def serve(self, scope: Scope, receive: Receive, send: Send, app: ASGICall) -> None:
        started = time.perf_counter()
        headers = scope["headers"]
        raw_id = None
        for name, value in headers:
            if name == REQUEST_ID_HEADER:
                raw_id = value
        info = RequestInfo(request_id_from(raw_id))
        token = current_request.set(info)
        status = 500
        id_header = (b"x-request-id", info.request_id.encode())
        metrics = self.metrics

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            elif status in (429, 402) and metrics is not None and message["type"] == "http.response.body":
                limit = limit_of(message.get("body", b""))
                if limit is not None:
                    metrics.observe_rate_limited(limit)
            await send(message)

        span = tracing.span(scope["method"], _server_attrs(scope, info), kind="server", parent=_parent(scope))
        route = UNMATCHED
        try:
            with span:
                try:
                    await app(scope, receive, send_with_id)
                finally:
                    route = self.route_of(scope)
                    span.rename(f"{scope['method']} {route}")
                    span.set("http.route", route)
                    span.set("http.response.status_code", status)
        finally:
            current_request.reset(token)
            seconds = time.perf_counter() - started
            if metrics is not None:
                metrics.observe_request(route, status, seconds)
            if self.access_log is not None:
                key_id = scope.get("state", {}).get("api_key_id")
                self.access_log.line(scope["method"], scope["path"], status, seconds, info, key_id)


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
