"""The store on a real Postgres: migrations (once, under concurrent starts), the queue's
``FOR UPDATE SKIP LOCKED`` claim under concurrent claimers, the recorder's batches and
``recording = "sync"``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runyard.backends.queue import SQLTaskQueue
from runyard.backends.recorder import InferenceRecorder
from runyard.backends.records import TaskRecord
from runyard.backends.store import Store, new_id, utcnow
from runyard.backends.usage import aggregate, key_spend
from runyard.config import ConfigError, parse_config

MIGRATE = """
import asyncio, sys
from runyard.backends.store import Store

async def main():
    store = Store(sys.argv[1])
    await store.start()
    print(await store.count_inferences(), await store.at_head())
    await store.aclose()

asyncio.run(main())
"""


def _inference(i: int, key: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": new_id(),
        "episode_id": new_id(),
        "kind": "chat",
        "model": "m",
        "provider": "dummy",
        "provider_model": "echo",
        "input": {"messages": [{"role": "user", "content": f"hi {i}"}]},
        "output": {"content": "ok", "n": i},
        "input_tokens": 3,
        "output_tokens": 2,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "latency_ms": 1.5,
        "ttft_ms": None,
        "status": "ok",
        "error": None,
        "attempts": [{"provider": "dummy"}],
        "api_key_id": key,
        "tags": {"i": str(i)},
        "created_at": utcnow(),
        "cost": 0.01,
        "cache_hit": i % 2 == 0,
        **extra,
    }


def _task(pool: str = "shared") -> TaskRecord:
    return TaskRecord(
        **{
            "id": new_id(),
            "app": "t/app",
            "version": "1.0.0",
            "status": "queued",
            "pool": pool,
            "input": {"x": 1},
            "setup": None,
            "session_id": None,
            "webhook": None,
            "attempts": 0,
            "max_attempts": 3,
            "affinity": None,
            "cancel_requested": False,
            "api_key_id": None,
            "created_at": utcnow(),
        }
    )


def test_concurrent_starts_migrate_once(postgres_url: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", MIGRATE, postgres_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
        assert out.split() == [b"0", b"True"]


async def test_inferences_feedback_keys_and_usage_round_trip(postgres_url: str) -> None:
    store = Store(postgres_url)
    await store.start()
    try:
        rows = [_inference(i, key="k1") for i in range(250)]
        await store.insert_inferences(rows)
        assert await store.count_inferences() == 250
        got = await store.get_inference(rows[7]["id"])
        assert got is not None
        assert got["output"] == {"content": "ok", "n": 7}  # JSON columns round trip
        assert got["tags"] == {"i": "7"}
        assert got["created_at"].tzinfo is not None
        assert await store.episode_exists(rows[3]["episode_id"])
        fid = await store.insert_feedback(
            target_type="inference", target_id=rows[0]["id"], metric_name="ok", value=True, tags={"a": "b"}
        )
        assert [f["id"] for f in await store.list_feedback(rows[0]["id"])] == [fid]
        key_id = await store.add_api_key("k", "sha256:" + "0" * 64, rpm_sync=5)
        assert [k["rpm_sync"] for k in await store.list_api_keys()] == [5]
        assert (await store.revoke_api_key(key_id) or {})["revoked_at"] is not None
        by_day = await aggregate(store, ["key", "day"])
        assert by_day[0]["requests"] == 250 and by_day[0]["cache_hits"] == 125
        assert by_day[0]["day"] == utcnow().strftime("%Y-%m-%d")
        since = utcnow() - timedelta(days=1)
        month_cost, day_cost, month_tokens, day_tokens = await key_spend(store, "k1", since, since)
        assert day_cost == month_cost
        assert month_tokens == day_tokens == 250 * 5
        assert month_cost == pytest.approx(2.5)
    finally:
        await store.aclose()


async def test_skip_locked_claims_each_task_once_across_concurrent_claimers(postgres_url: str) -> None:
    """8 claimers, each with its own engine (as separate processes would be), drain 200 tasks:
    every task is claimed exactly once."""
    first = Store(postgres_url)
    await first.start()
    queue = SQLTaskQueue(first)
    ids = []
    for _ in range(200):
        row = _task()
        ids.append(row.id)
        await queue.enqueue(row)
    stores = [Store(postgres_url, pool_size=2) for _ in range(8)]

    async def drain(n: int) -> list[str]:
        q = SQLTaskQueue(stores[n])
        got = []
        while (task := await q.claim("shared", f"w{n}", 30.0)) is not None:
            got.append(task.id)
            assert await q.finish(task.id, f"w{n}", "completed", output={"ok": n})
        return got

    try:
        claimed = await asyncio.gather(*(drain(n) for n in range(8)))
        flat = [i for c in claimed for i in c]
        assert sorted(flat) == sorted(ids)  # all of them, none twice
        assert sum(1 for c in claimed if c) >= 2  # they really ran side by side
        async with first.engine.connect() as conn:
            statuses = dict((await conn.execute(sa.text("SELECT status, count(*) FROM tasks GROUP BY 1"))).all())
        assert statuses == {"completed": 200}
    finally:
        for s in stores:
            await s.aclose()
        await first.aclose()


async def test_recorder_sync_mode_writes_before_returning(postgres_url: str) -> None:
    store = Store(postgres_url)
    await store.start()
    recorder = InferenceRecorder(store, flush_interval_s=60.0, batch_size=100, max_buffer=1000)
    await recorder.start()
    try:
        rows = [_inference(i) for i in range(20)]
        for row in rows:
            recorder.record(row["id"], row["episode_id"], lambda row=row: row)
        # the writer sleeps 60 s between flushes: only persist() can have written them
        await asyncio.gather(*(recorder.persist(r["id"]) for r in rows))
        assert await store.count_inferences() == 20
        assert not recorder.is_pending(rows[-1]["id"])
    finally:
        await recorder.aclose()
        await store.aclose()


def test_missing_driver_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "asyncpg" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        parse_config({"storage": {"url": "postgresql+asyncpg://u@h/db"}}, "runyard.toml")
    assert "\n" not in str(err.value)
    assert "asyncpg" in str(err.value) and "runyard[postgres]" in str(err.value)


def test_storage_and_redis_config() -> None:
    config = parse_config(
        {
            "storage": {"url": "postgresql+asyncpg://u@h/db", "pool_size": 3, "recording": "sync"},
            "redis": {"url": "redis://127.0.0.1:6379/2", "prefix": "prod:"},
        }
    )
    assert config.storage.pool_size == 3 and config.storage.recording == "sync"
    assert config.redis is not None and config.redis.prefix == "prod:"
    with pytest.raises(ConfigError, match="unsupported URL scheme 'mysql'"):
        parse_config({"storage": {"url": "mysql://h/db"}})


@pytest.mark.sqlite_only("the scale-out run gives every config a [redis] table")
def test_no_redis_table_keeps_state_in_process() -> None:
    config = parse_config({})
    assert config.redis is None
    assert config.storage.url.startswith("sqlite+aiosqlite:") and config.storage.recording == "async"


async def test_the_scale_out_run_moves_sqlite_stores_to_postgres(tmp_path: Path) -> None:
    from support import scaleout_hook

    if not scaleout_hook.enabled():
        pytest.skip("only in the scale-out run (RUNYARD_TEST_POSTGRES_URL)")
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    first, again = Store(url), Store(url)
    try:
        assert first.is_postgres and first.url == again.url  # one database per SQLite file
        await first.start()
        assert await again.at_head()  # a copy of the migrated template
        assert parse_config({}).redis is not None
    finally:
        await first.aclose()
        await again.aclose()


async def test_concurrent_saves_and_publishes_of_one_workflow(postgres_url: str) -> None:
    """Two gateways saving a new workflow at once both succeed (one inserts, the other updates);
    eight publishes at once get versions 1..8, and ``main`` ends on the last (no 500 from the
    version key, no alias moved back)."""
    from runyard.workflows import Workflow
    from runyard.workflows.store import WorkflowStore

    store = Store(postgres_url)
    await store.start()
    flows = WorkflowStore(store.engine)
    try:
        definition = Workflow("race/flow").input(text="string").output(echo="{{ start.text }}").to_dict()
        saved = await asyncio.gather(*(flows.save(definition) for _ in range(4)))
        assert {s["name"] for s in saved} == {"race/flow"}
        published = await asyncio.gather(*(flows.publish("race/flow") for _ in range(8)))
        assert sorted(p["published_version"] for p in published) == list(range(1, 9))
        status = await flows.status("race/flow")
        assert status["aliases"]["main"] == 8
    finally:
        await store.aclose()


async def test_a_new_namespace_goes_to_one_workspace_and_template_versions_do_not_collide(postgres_url: str) -> None:
    """Two workspaces saving into one new namespace at the same moment: one owns it, the other gets
    403 ``namespace_taken`` (not both); eight versions of one agent template at once are 1..8."""
    from runyard.agents.chats import ChatStore
    from runyard.errors import PermissionDeniedError
    from runyard.workflows import Workflow
    from runyard.workflows.store import WorkflowStore

    store = Store(postgres_url)
    await store.start()
    flows, agents = WorkflowStore(store.engine), ChatStore(store.engine)
    try:
        for round_ in range(5):
            names = [f"claim{round_}/{who}" for who in ("a", "b")]
            drafts = [Workflow(n).input(text="string").output(echo="{{ start.text }}").to_dict() for n in names]
            saves = [flows.save(d, viewer=ws) for d, ws in zip(drafts, ("ws-a", "ws-b"), strict=True)]
            outcomes = await asyncio.gather(*saves, return_exceptions=True)
            refused = [o for o in outcomes if isinstance(o, PermissionDeniedError)]
            assert len(refused) == 1 and refused[0].code == "namespace_taken", outcomes
        made = await asyncio.gather(*(agents.create_template("race/helper", {"model": "gpt"}) for _ in range(8)))
        assert sorted(m["version"] for m in made) == list(range(1, 9))
    finally:
        await store.aclose()


async def test_a_claim_whose_lease_ran_out_is_fenced_off_from_the_same_workers_next(postgres_url: str) -> None:
    """A worker's lease runs out (its heartbeats did not reach the store) and the task is queued
    again; the same worker claims it again. The first claim's heartbeat, release and finish no
    longer touch it: only the new claim's do."""
    store = Store(postgres_url)
    await store.start()
    queue = SQLTaskQueue(store)
    try:
        await queue.enqueue(_task())
        first = await queue.claim("shared", "w1", 0.05)
        assert first is not None and first.attempts == 1
        await asyncio.sleep(0.1)
        await queue.requeue_expired()
        again = await queue.claim("shared", "w1", 30.0)
        assert again is not None and again.id == first.id and again.attempts == 2
        assert await queue.heartbeat(first.id, "w1", 30.0, attempt=1) is None  # lost: the copy stops
        await queue.release(first.id, "w1", None, attempt=1)  # no effect on the new claim
        assert not await queue.finish(first.id, "w1", "completed", attempt=1, output={"copy": 1})
        assert await queue.heartbeat(first.id, "w1", 30.0, attempt=2) is False
        assert await queue.finish(first.id, "w1", "completed", attempt=2, output={"copy": 2})
        done = await queue.get(first.id)
        assert done is not None and done.status == "completed" and done.output == {"copy": 2}
    finally:
        await store.aclose()
