"""Usage aggregation over the inferences table: plain GROUP BY that runs on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .schema import api_keys, inferences
from .store import Store

GROUPS = ("key", "model", "day", "provider")


def _day(store: Store) -> Any:
    col = inferences.c.created_at
    if store.url.get_backend_name() == "sqlite":
        return sa.func.date(col)  # 'YYYY-MM-DD' (times are stored in UTC)
    return sa.func.to_char(sa.func.timezone("UTC", col), "YYYY-MM-DD")


async def aggregate(
    store: Store,
    group_by: Sequence[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    key_ids: Sequence[str] | None = None,
    workspace: str | None = None,
) -> list[dict[str, Any]]:
    """Requests, tokens, cost and cache hits per group, ordered by the groups.

    ``key_ids`` or ``workspace`` restrict to those keys' inferences (a workspace includes
    its revoked keys' history); ``since`` is inclusive, ``until`` exclusive.
    """
    cols: dict[str, Any] = {
        "key": inferences.c.api_key_id,
        "model": inferences.c.model,
        "provider": inferences.c.provider,
        "day": _day(store),
    }
    groups = [cols[g].label(g) for g in group_by]
    cost_sum = sa.func.sum(inferences.c.cost)
    query = sa.select(
        *groups,
        sa.func.count().label("requests"),
        sa.func.coalesce(sa.func.sum(inferences.c.input_tokens), 0).label("input_tokens"),
        sa.func.coalesce(sa.func.sum(inferences.c.output_tokens), 0).label("output_tokens"),
        sa.func.coalesce(sa.func.sum(inferences.c.cached_tokens), 0).label("cached_tokens"),
        sa.func.coalesce(sa.func.sum(inferences.c.reasoning_tokens), 0).label("reasoning_tokens"),
        cost_sum.label("cost"),
        sa.func.coalesce(sa.func.sum(sa.case((inferences.c.cache_hit, 1), else_=0)), 0).label("cache_hits"),
        sa.func.coalesce(sa.func.sum(sa.case((inferences.c.status != "ok", 1), else_=0)), 0).label("errors"),
    )
    if since is not None:
        query = query.where(inferences.c.created_at >= since)
    if until is not None:
        query = query.where(inferences.c.created_at < until)
    if key_ids is not None:
        query = query.where(inferences.c.api_key_id.in_(list(key_ids)))
    if workspace is not None:
        members = sa.select(api_keys.c.id).where(api_keys.c.workspace == workspace)
        query = query.where(inferences.c.api_key_id.in_(members.scalar_subquery()))
    if groups:
        positions: list[Any] = [sa.literal_column(str(i + 1)) for i in range(len(groups))]
        query = query.group_by(*positions).order_by(*positions)
    async with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(query)]
    out = []
    for row in rows:
        item = {str(k): v for k, v in row.items()}
        for name in ("requests", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"):
            item[name] = int(item[name] or 0)
        item["cache_hits"] = int(item["cache_hits"] or 0)
        item["errors"] = int(item["errors"] or 0)
        item["cost"] = float(item["cost"]) if item["cost"] is not None else None
        if "day" in item and item["day"] is not None:
            item["day"] = str(item["day"])
        out.append(item)
    return out


async def key_spend(
    store: Store, key_id: str, month_start: datetime, day_start: datetime
) -> tuple[float, float, int, int]:
    """(month cost, day cost, month tokens, day tokens) recorded for one key since those starts."""
    col = inferences.c
    in_day = col.created_at >= day_start
    tokens = col.input_tokens + col.output_tokens
    query = sa.select(
        sa.func.coalesce(sa.func.sum(col.cost), 0.0),
        sa.func.coalesce(sa.func.sum(sa.case((in_day, col.cost), else_=0.0)), 0.0),
        sa.func.coalesce(sa.func.sum(tokens), 0),
        sa.func.coalesce(sa.func.sum(sa.case((in_day, tokens), else_=0)), 0),
    ).where(col.api_key_id == key_id, col.created_at >= min(month_start, day_start))
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).one()
    return float(row[0]), float(row[1]), int(row[2]), int(row[3])


async def key_largest_cost(store: Store, key_id: str, since: datetime) -> float | None:
    """The largest single cost recorded for one key since ``since`` (None: no inference)."""
    col = inferences.c
    query = sa.select(sa.func.max(col.cost)).where(col.api_key_id == key_id, col.created_at >= since)
    async with store.engine.connect() as conn:
        largest = (await conn.execute(query)).scalar()
    return None if largest is None else float(largest)


async def key_names(store: Store, key_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """id -> {name, workspace} for the store keys among ``key_ids``."""
    ids = [k for k in key_ids if k]
    if not ids:
        return {}
    query = sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.workspace).where(api_keys.c.id.in_(ids))
    async with store.engine.connect() as conn:
        return {i: {"name": n, "workspace": w} for i, n, w in await conn.execute(query)}
