"""Usage and limits: ``GET /v1/usage`` (aggregates) and ``GET /v1/usage/limits`` (Sim's shape).

``/api/users/me/usage-limits`` answers the same as ``/v1/usage/limits``: it is the path
the ``simstudio-sdk`` client's ``get_usage_limits()`` calls.

Who sees what: without API keys, everything; a config key (``server.api_keys``, the
operator's), every key's usage; a store key, its workspace's keys (revoked ones included).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...backends.usage import GROUPS, aggregate, key_names
from ...errors import InvalidRequestError
from ..http import gateway, json_response
from ..openapi import ANY_OBJECT, Operation, Param

TOTAL_FIELDS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cache_hits",
    "errors",
)


def _time(value: str | None, name: str) -> datetime | None:
    """ISO 8601 date or datetime (naive = UTC), or epoch seconds."""
    if not value:
        return None
    try:
        if value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), timezone.utc)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise InvalidRequestError(
            f"{name} must be an ISO 8601 date/time or epoch seconds, not {value!r}", code="invalid_time"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


async def usage(request: Request) -> Response:
    q = request.query_params
    raw_groups = q.get("group_by", "key,model,day")
    groups = [g.strip() for g in raw_groups.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad or len(set(groups)) != len(groups):
        raise InvalidRequestError(
            f"group_by takes distinct values among {', '.join(GROUPS)}; got {raw_groups!r}", code="invalid_group_by"
        )
    since, until = _time(q.get("since"), "since"), _time(q.get("until"), "until")
    gw = gateway(request)
    if gw.recorder is not None:
        await gw.recorder.flush()  # include what is still buffered
    key = getattr(request.state, "api_key", None)
    workspace = None if key is None or key.admin else key.workspace
    only = q.get("key")
    rows = await aggregate(
        gw.store, groups, since=since, until=until, key_ids=[only] if only else None, workspace=workspace
    )
    if "key" in groups:
        names = await key_names(gw.store, [r["key"] for r in rows if r["key"]])
        for row in rows:
            row["key_name"] = (names.get(row["key"]) or {}).get("name")
    total: dict[str, Any] = {f: sum(r[f] for r in rows) for f in TOTAL_FIELDS}
    costs = [r["cost"] for r in rows if r["cost"] is not None]
    total["cost"] = sum(costs) if costs else None
    return json_response(
        {
            "object": "usage",
            "group_by": groups,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "data": rows,
            "total": total,
        }
    )


async def usage_limits(request: Request) -> Response:
    gw = gateway(request)
    state = request.scope.get("state") or {}
    key = state.get("api_key")
    policy = state.get("limit_policy") or (key.policy if key is not None else None)
    auth_type = "api" if key is not None else "none"
    return json_response(await gw.limits.snapshot(policy, auth_type))


routes = [
    Route("/v1/usage", usage, methods=["GET"]),
    Route("/v1/usage/limits", usage_limits, methods=["GET"]),
    Route("/api/users/me/usage-limits", usage_limits, methods=["GET"]),
]

# The API description (server/openapi): one declaration per route.
operations = [
    Operation(
        "GET",
        "/v1/usage",
        "Usage aggregates",
        "usage",
        "getUsage",
        response=ANY_OBJECT,
        params=(
            Param("group_by", description=f"comma-separated, among {', '.join(GROUPS)}"),
            Param("since", description="ISO 8601 or epoch seconds"),
            Param("until", description="ISO 8601 or epoch seconds"),
            Param("key", description="one API key id"),
        ),
    ),
    Operation(
        "GET",
        "/v1/usage/limits",
        "The caller's limits and what is left",
        "usage",
        "getUsageLimits",
        response=ANY_OBJECT,
    ),
    Operation("GET", "/api/users/me/usage-limits", "Sim: usage limits", "sim", "simUsageLimits", response=ANY_OBJECT),
]
