"""Stored inferences, listed: ``GET /v1/inferences`` (filters, newest first, cursor paging).

One inference by id is ``GET /v1/inferences/{id}`` (routes/native.py: its input, output,
attempts and feedback). The console's Inferences page runs the same query.

Who sees what is the rule of server/access.py: a store key sees its workspace's rows only.
Ids are UUIDv7 (time-ordered), so the cursor is the last id of a page and a page is one
indexed range scan, never an OFFSET.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...backends.schema import api_keys, feedback, inferences
from ...backends.store import Store
from ...errors import InvalidRequestError
from ..access import scope_workspace
from ..http import gateway, json_response
from ..openapi import ANY_OBJECT, Operation, Param
from .usage import _time

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
# What a list row carries: everything but the (possibly large) input, output and attempts.
SUMMARY_COLUMNS = [c for c in inferences.c if c.name not in ("input", "output", "attempts")]


@dataclass
class InferenceFilter:
    """The filters of a listing; None leaves a filter off."""

    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    provider: str | None = None
    key: str | None = None
    kind: str | None = None
    status: str | None = None
    has_feedback: bool | None = None
    episode_id: str | None = None

    @classmethod
    def from_query(cls, q: QueryParams) -> InferenceFilter:
        """From query parameters (empty ones ignored); 400 with a code for a bad value."""
        has = q.get("has_feedback") or None
        if has is not None and has not in ("true", "false"):
            raise InvalidRequestError("has_feedback must be true or false", code="invalid_has_feedback")
        text = {
            f.name: (q.get(f.name) or None) for f in fields(cls) if f.name not in ("since", "until", "has_feedback")
        }
        for name, value in text.items():
            if value is not None and len(value) > 255:
                raise InvalidRequestError(f"{name} is longer than 255 characters", code="invalid_filter")
        return cls(
            since=_time(q.get("since"), "since"),
            until=_time(q.get("until"), "until"),
            has_feedback=None if has is None else has == "true",
            **text,
        )

    def as_query(self) -> dict[str, str]:
        """The filters as query parameters (for the console's paging links)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool):
                out[f.name] = "true" if value else "false"
            elif isinstance(value, datetime):
                out[f.name] = value.isoformat()
            else:
                out[f.name] = str(value)
        return out


def page_limit(raw: str | None) -> int:
    try:
        limit = int(raw) if raw else DEFAULT_LIMIT
    except ValueError:
        raise InvalidRequestError("limit must be an integer", code="invalid_limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit")
    return limit


async def list_inferences(
    store: Store,
    filters: InferenceFilter,
    *,
    workspace: str | None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of inference summaries, newest first: ``{data, next_cursor, has_more}``."""
    c = inferences.c
    query = sa.select(*SUMMARY_COLUMNS).order_by(c.id.desc()).limit(limit + 1)
    conditions: list[Any] = []
    if cursor:
        conditions.append(c.id < cursor)
    if filters.since is not None:
        conditions.append(c.created_at >= filters.since)
    if filters.until is not None:
        conditions.append(c.created_at < filters.until)
    for name in ("model", "provider", "kind", "status", "episode_id"):
        value = getattr(filters, name)
        if value is not None:
            conditions.append(getattr(c, name) == value)
    if filters.key is not None:
        conditions.append(c.api_key_id == filters.key)
    if filters.has_feedback is not None:
        rated = sa.exists().where(feedback.c.target_id == c.id)
        conditions.append(rated if filters.has_feedback else ~rated)
    if workspace is not None:
        members = sa.select(api_keys.c.id).where(api_keys.c.workspace == workspace)
        conditions.append(c.api_key_id.in_(members.scalar_subquery()))
    if conditions:
        query = query.where(*conditions)
    async with store.engine.connect() as conn:
        rows = [{str(k): v for k, v in r._mapping.items()} for r in await conn.execute(query)]
    has_more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:
        row["created_at"] = row["created_at"].isoformat()
    return {"data": rows, "next_cursor": rows[-1]["id"] if has_more else None, "has_more": has_more}


async def inferences_list(request: Request) -> Response:
    q = request.query_params
    gw = gateway(request)
    filters = InferenceFilter.from_query(q)
    limit = page_limit(q.get("limit"))
    if gw.recorder is not None:
        await gw.recorder.flush()  # what was just answered is listed
    page = await list_inferences(
        gw.store, filters, workspace=scope_workspace(request), limit=limit, cursor=page_cursor(q.get("cursor"))
    )
    return json_response({"object": "list", **page})


def page_cursor(value: str | None) -> str | None:
    """``?cursor=``: the last inference id of the previous page (400 ``invalid_cursor`` otherwise)."""
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidRequestError(
            "'cursor' must be an inference id (next_cursor of a page)", code="invalid_cursor"
        ) from None


routes = [Route("/v1/inferences", inferences_list, methods=["GET"])]

# The API description (server/openapi): one declaration per route.
_TIME = {"type": "string", "format": "date-time"}
_FILTERS = tuple(
    Param(f.name, schema=_TIME, description="ISO 8601 time") if f.name in ("since", "until") else Param(f.name)
    for f in fields(InferenceFilter)
    if f.name != "has_feedback"
)
operations = [
    Operation(
        "GET",
        "/v1/inferences",
        "Stored inferences, newest first (summaries; cursor paging)",
        "inferences",
        "listInferences",
        response=ANY_OBJECT,
        params=(
            *_FILTERS,
            Param("has_feedback", schema={"enum": ["true", "false"]}),
            Param("limit", schema={"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
            Param("cursor", schema={"type": "string", "format": "uuid"}, description="a page's `next_cursor`"),
        ),
    ),
]
