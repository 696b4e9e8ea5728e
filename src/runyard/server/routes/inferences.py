"""``GET /v1/inferences``: recorded inferences, newest first, a page at a time.

``?limit=`` (1-200, default 20), ``?after=<id>`` (the last id of the previous page), filters
``model``, ``provider``, ``kind``, ``status``. A store key sees its own workspace's inferences only.
One inference with its feedback is ``GET /v1/inferences/{id}`` (:mod:`.native`).
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...backends.schema import api_keys, inferences
from ...errors import InvalidRequestError
from ..access import scope_workspace
from ..http import gateway, json_response

__all__ = ["routes"]

FILTERS = ("model", "provider", "kind", "status")
SUMMARY = (
    "id", "created_at", "kind", "model", "provider", "status", "input_tokens", "output_tokens",
    "latency_ms", "cost", "cache_hit", "episode_id", "error",
)  # fmt: skip


async def list_inferences(request: Request) -> Response:
    q = request.query_params
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise InvalidRequestError("limit must be an integer", code="invalid_limit") from None
    if not 1 <= limit <= 200:
        raise InvalidRequestError("limit must be between 1 and 200", code="invalid_limit")
    after = q.get("after")
    if after:
        try:
            after = str(uuid.UUID(after))
        except ValueError:
            raise InvalidRequestError("'after' must be an inference id", code="invalid_cursor") from None
    gw = gateway(request)
    if gw.recorder is not None:
        await gw.recorder.flush()  # what was just answered is listed
    query = sa.select(*(inferences.c[name] for name in SUMMARY)).order_by(inferences.c.id.desc()).limit(limit + 1)
    workspace = scope_workspace(request)
    if workspace is not None:
        members = sa.select(api_keys.c.id).where(api_keys.c.workspace == workspace)
        query = query.where(inferences.c.api_key_id.in_(members.scalar_subquery()))
    for name in FILTERS:
        if q.get(name):
            query = query.where(inferences.c[name] == q[name])
    if after:
        query = query.where(inferences.c.id < after)
    async with gw.store.engine.connect() as conn:
        rows: list[dict[str, Any]] = [{str(k): v for k, v in r._mapping.items()} for r in await conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:
        row["created_at"] = row["created_at"].isoformat()
    next_after = rows[-1]["id"] if more else None
    return json_response({"object": "list", "data": rows, "has_more": more, "next_after": next_after})


routes = [Route("/v1/inferences", list_inferences, methods=["GET"])]
