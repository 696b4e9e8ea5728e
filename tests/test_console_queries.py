"""The console's queries and ``GET /v1/inferences``'s listing on SQLite and on the real PostgreSQL
server (a database made for the test and dropped after): the same answers on both."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runyard.agents.chats import agent_chats
from runyard.backends.schema import tasks
from runyard.backends.store import Store, new_id, utcnow
from runyard.server.console import queries
from runyard.server.routes.inferences import InferenceFilter, list_inferences
from support.store_rows import inference_row

PG_ADMIN = "postgresql://root@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s = Store(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
        await s.start()
        yield s
        await s.aclose()
        return
    import asyncpg

    name = f"console_q_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN)
    except (OSError, asyncpg.PostgresError) as err:
        pytest.skip(f"PostgreSQL not reachable: {err}")
    await admin.execute(f'CREATE DATABASE "{name}"')
    s = Store(f"postgresql+asyncpg://root@127.0.0.1:5432/{name}")
    try:
        await s.start()
        yield s
    finally:
        await s.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.close()


def inference(key: str | None, model: str, latency: float, minutes_ago: float, status: str = "ok") -> dict[str, Any]:
    return inference_row(key, model=model, latency=latency, minutes_ago=minutes_ago, status=status)


async def test_queries_agree_across_databases(store: Store) -> None:
    a = await store.add_api_key("a", "sha256:a", workspace="wa")
    b = await store.add_api_key("b", "sha256:b", workspace="wb")
    rows = [inference(a, "m1", float(i), 1) for i in range(1, 101)]
    rows += [inference(b, "m2", 1000.0, 5, "error"), inference(b, "m2", 1000.0, 600)]
    await store.insert_inferences(rows)
    since = utcnow() - timedelta(hours=1)
    assert await queries.latency_percentiles(store, since, "wa") == {"p50": 51.0, "p99": 100.0}
    hour = await queries.timeline(store, "hour", None)
    assert len(hour["t"]) == 60 and sum(hour["requests"]) == 101 and sum(hour["errors"]) == 1
    assert sum(hour["cost"]) == pytest.approx(50.5)
    day = await queries.timeline(store, "day", "wb")
    assert sum(day["requests"]) == 2 and sum(day["tokens"]) == 30

    page = await list_inferences(store, InferenceFilter(model="m1"), workspace=None, limit=40)
    assert len(page["data"]) == 40 and page["has_more"]
    rest = await list_inferences(
        store, InferenceFilter(model="m1"), workspace=None, limit=80, cursor=page["next_cursor"]
    )
    assert len(rest["data"]) == 60 and rest["next_cursor"] is None
    assert not {r["id"] for r in page["data"]} & {r["id"] for r in rest["data"]}
    theirs = await list_inferences(store, InferenceFilter(), workspace="wb", limit=200)
    assert {r["model"] for r in theirs["data"]} == {"m2"} and len(theirs["data"]) == 2
    errors = await list_inferences(store, InferenceFilter(status="error", since=since), workspace=None)
    assert len(errors["data"]) == 1

    now = utcnow()
    async with store.engine.begin() as conn:
        await conn.execute(
            tasks.insert(),
            [
                {
                    "id": new_id(),
                    "app": "x/y",
                    "version": "1",
                    "status": s,
                    "pool": p,
                    "attempts": 0,
                    "max_attempts": 1,
                    "cancel_requested": False,
                    "created_at": now,
                }
                for s, p in (("queued", "gpu"), ("queued", "gpu"), ("queued", "cpu"), ("completed", "cpu"))
            ],
        )
        for key, status in ((a, "awaiting_approval"), (a, "idle"), (b, "awaiting_approval")):
            chat_id = new_id()
            data = {"id": chat_id, "status": status, "api_key_id": key, "messages": [{"role": "user", "content": "hi"}]}
            await conn.execute(
                agent_chats.insert().values(id=chat_id, agent="t/a@1", data=data, created_at=now, updated_at=now)
            )
    assert await queries.queue_depth(store) == {"gpu": 2, "cpu": 1}
    assert await queries.live_workers(store) == 0
    mine = await queries.chat_page(store, workspace="wa")
    assert [c["status"] for c in mine["data"]] == ["idle", "awaiting_approval"] and mine["data"][0]["first"] == "hi"
    waiting = await queries.chat_page(store, workspace=None, awaiting=True, limit=1)
    assert len(waiting["data"]) == 1 and waiting["next_cursor"] is not None
    assert len((await queries.chat_page(store, workspace=None, agent="t/a"))["data"]) == 3
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(agent_chats))).scalar_one() == 3
