"""The console's own read queries (bounded: aggregates, or a LIMIT with a cursor).

What the API already serves comes from the services; what only a page needs (latency
percentiles, time buckets, queue depth, agent listings) is here, against the store's tables.
A ``workspace`` confines a query to that workspace's keys, as the API's listings are.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from ...agents.chats import AWAIT_APPROVAL, agent_chats, agent_templates
from ...backends.schema import api_keys, inferences, tasks
from ...backends.store import Store

BUCKETS = {"hour": (timedelta(hours=1), 60), "day": (timedelta(days=1), 24)}


def _members(workspace: str) -> Any:
    return sa.select(api_keys.c.id).where(api_keys.c.workspace == workspace).scalar_subquery()


def _scoped(query: Any, column: Any, workspace: str | None) -> Any:
    return query if workspace is None else query.where(column.in_(_members(workspace)))


async def latency_percentiles(store: Store, since: datetime, workspace: str | None) -> dict[str, float | None]:
    """p50 and p99 of ``latency_ms`` since ``since``: a count, then one indexed row per percentile."""
    c = inferences.c
    base = _scoped(
        sa.select(sa.func.count()).select_from(inferences).where(c.created_at >= since), c.api_key_id, workspace
    )
    out: dict[str, float | None] = {"p50": None, "p99": None}
    async with store.engine.connect() as conn:
        n = int((await conn.execute(base)).scalar_one())
        if not n:
            return out
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            at = min(n - 1, int(q * n))
            query = (
                _scoped(sa.select(c.latency_ms).where(c.created_at >= since), c.api_key_id, workspace)
                .order_by(c.latency_ms)
                .offset(at)
                .limit(1)
            )
            out[name] = float((await conn.execute(query)).scalar_one())
    return out


async def timeline(store: Store, window: str, workspace: str | None) -> dict[str, list[float]]:
    """Requests, errors, tokens and cost per minute (``hour``) or per hour (``day``), oldest first,
    one point per bucket (empty buckets are 0): uPlot's column arrays, ``t`` in epoch seconds."""
    span, count = BUCKETS[window]
    step = span.total_seconds() / count
    now = time.time()
    first = (now // step - count + 1) * step
    since = datetime.fromtimestamp(first, timezone.utc)
    c = inferences.c
    if store.url.get_backend_name() == "sqlite":
        epoch: Any = sa.cast(sa.func.strftime("%s", c.created_at), sa.Float)
    else:
        epoch = sa.func.extract("epoch", c.created_at)
    bucket = sa.func.floor((epoch - first) / step).label("b")
    query = sa.select(
        bucket,
        sa.func.count(),
        sa.func.sum(sa.case((c.status != "ok", 1), else_=0)),
        sa.func.sum(c.input_tokens + c.output_tokens),
        sa.func.sum(c.cost),
    ).where(c.created_at >= since)
    query = _scoped(query, c.api_key_id, workspace).group_by(sa.literal_column("b"))
    series: dict[str, list[float]] = {
        "t": [first + i * step for i in range(count)],
        "requests": [0.0] * count,
        "errors": [0.0] * count,
        "tokens": [0.0] * count,
        "cost": [0.0] * count,
    }
    async with store.engine.connect() as conn:
        for b, requests, errors, tokens, cost in await conn.execute(query):
            i = int(b)
            if 0 <= i < count:
                series["requests"][i] = float(requests or 0)
                series["errors"][i] = float(errors or 0)
                series["tokens"][i] = float(tokens or 0)
                series["cost"][i] = float(cost or 0)
    return series


async def queue_depth(store: Store) -> dict[str, int]:
    """Queued tasks per pool."""
    query = sa.select(tasks.c.pool, sa.func.count()).where(tasks.c.status == "queued").group_by(tasks.c.pool)
    async with store.engine.connect() as conn:
        return {pool: int(n) for pool, n in await conn.execute(query)}


async def live_workers(store: Store) -> int:
    """Workers holding an unexpired lease on a task (busy and heartbeating)."""
    c = tasks.c
    query = sa.select(sa.func.count(sa.distinct(c.worker_id))).where(
        c.status == "processing", c.lease_until > time.time()
    )
    async with store.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def agent_template_list(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    """Each template's name, latest version, when that was created and its namespace's owner, by name."""
    t = agent_templates.c
    query = (
        sa.select(
            t.name,
            sa.func.max(t.version).label("latest"),
            sa.func.max(t.created_at).label("created_at"),
            sa.func.max(t.workspace).label("workspace"),
        )
        .group_by(t.name)
        .order_by(t.name)
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def chat_page(
    store: Store,
    *,
    workspace: str | None,
    awaiting: bool = False,
    agent: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of chats, newest first (ids are UUIDv7): ``{data, next_cursor}``; ``awaiting``: only
    those waiting for an approval. A store key sees its workspace's chats only."""
    c = agent_chats.c
    status = c.data["status"].as_string()
    owner = c.data["api_key_id"].as_string()
    query = sa.select(c.id, c.agent, c.data, c.created_at).order_by(c.id.desc()).limit(limit + 1)
    if cursor:
        query = query.where(c.id < cursor)
    if awaiting:
        query = query.where(status == AWAIT_APPROVAL)
    if agent:
        query = query.where(c.agent.like(f"{agent}@%"))
    if workspace is not None:
        query = query.where(owner.in_(_members(workspace)))
    async with store.engine.connect() as conn:
        rows = list(await conn.execute(query))
    more = len(rows) > limit
    out = []
    for row in rows[:limit]:
        data = row.data or {}
        messages = data.get("messages") or []
        first = next((m.get("content") for m in messages if m.get("role") == "user"), "")
        out.append(
            {
                "id": row.id,
                "agent": row.agent,
                "status": data.get("status"),
                "messages": len(messages),
                "first": first if isinstance(first, str) else "(multi-part)",
                "created_at": row.created_at,
            }
        )
    return {"data": out, "next_cursor": out[-1]["id"] if more and out else None}
