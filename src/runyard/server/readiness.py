"""``GET /readyz``: can this replica serve? The store answers and is migrated to this code's head,
and Redis answers when ``[redis]`` is configured (``/healthz`` stays plain liveness)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from ..backends.redis_conn import RedisHandle
from ..backends.store import Store
from .http import json_response
from .openapi import ANY_OBJECT, Operation

CHECK_TIMEOUT_S = 2.0


def readyz_endpoint(store: Store, redis: RedisHandle | None) -> Callable[[Request], Awaitable[Response]]:
    async def readyz(_request: Request) -> Response:
        checks: dict[str, str] = {}
        try:
            at_head = await asyncio.wait_for(store.at_head(), CHECK_TIMEOUT_S)
            checks["store"] = "ok"
            checks["migrations"] = "ok" if at_head else "not at this version's head"
        except Exception as err:
            checks["store"] = f"unreachable: {type(err).__name__}"
        if redis is not None:
            try:
                await asyncio.wait_for(redis.ping(), CHECK_TIMEOUT_S)
                checks["redis"] = "ok"
            except Exception as err:
                checks["redis"] = f"unreachable: {type(err).__name__}"
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        if not ready:
            body["code"] = "not_ready"
        return json_response(body, status=200 if ready else 503)

    return readyz


# The API description (server/openapi): a probe, open without a key.
operations = [
    Operation(
        "GET",
        "/readyz",
        "Readiness: the store migrated and reachable, Redis reachable when configured (503 otherwise)",
        "meta",
        "readyz",
        response=ANY_OBJECT,
        security="none",
    )
]
