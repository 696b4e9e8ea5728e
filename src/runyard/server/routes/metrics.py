"""``GET /metrics``: the Prometheus text exposition (README "Operate").

Authenticated apart from the other routes (it is one of the Guard's self-authenticating
prefixes): with ``[telemetry] metrics_token`` that bearer token is accepted; with API keys on,
an admin key (one from ``server.api_keys``) is; a workspace key is refused (403).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from ...config import hash_api_key
from ...errors import AuthenticationError, NotFoundError, PermissionDeniedError
from ...gateway import Gateway
from ...services.limits import Policy
from ..http import header
from ..openapi import Operation

PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def authenticate(gw: Gateway, scope: Scope) -> tuple[str, str, Policy] | None:
    """The Guard's hook: None (let through; a workspace key is marked and refused by the route)
    or AuthenticationError."""
    token_hash = gw.config.telemetry.metrics_token
    authorization = header(scope, b"authorization")
    bearer = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else None
    if token_hash and bearer and hmac.compare_digest(hash_api_key(bearer), token_hash):
        return None
    if not gw.auth.enabled:
        if token_hash:
            raise AuthenticationError("send the metrics token: 'Authorization: Bearer <token>'", code="invalid_api_key")
        return None
    key = await gw.auth.lookup(authorization, header(scope, b"x-api-key"))
    if key is not None and not key.admin:
        scope.setdefault("state", {})["metrics_denied"] = True
    return None


async def metrics(request: Request) -> Response:
    telemetry = request.scope["app"].state.telemetry
    if telemetry.metrics is None:
        raise NotFoundError("metrics are off ([telemetry] metrics = false)", code="metrics_disabled")
    if request.scope.get("state", {}).get("metrics_denied"):
        raise PermissionDeniedError("/metrics needs an admin key or the metrics token", code="admin_key_required")
    telemetry.sample()
    if telemetry.task_metrics is not None:
        await telemetry.task_metrics.refresh()
    return Response(telemetry.metrics.render(), media_type=CONTENT_TYPE)


def sample_gateway(gw: Gateway) -> Callable[[Any], None]:
    """A sampler of ``gw``'s process state for :class:`~runyard.telemetry.service.Telemetry`."""

    def sample(m: Any) -> None:
        recorder = gw.recorder
        stats = recorder.stats() if recorder is not None else {"buffered": 0, "buffered_bytes": 0, "dropped": 0}
        worker = gw.worker
        m.sample(
            backlog=stats["buffered"],
            backlog_bytes=stats["buffered_bytes"],
            dropped=stats["dropped"],
            circuits=gw.ai.breakers.status(),
            workers=gw.tasks.pools() if worker is not None else {},
        )

    return sample


routes = [Route(PATH, metrics, methods=["GET"])]

# The API description (server/openapi): the Prometheus text exposition.
operations = [
    Operation(
        "GET",
        PATH,
        "Prometheus metrics (an admin key or the metrics token)",
        "meta",
        "metrics",
        response={"type": "string"},
        response_media="text/plain",
    )
]
