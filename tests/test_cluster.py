"""A small cluster on real Postgres + Redis: two ``runyard serve --no-worker`` gateways and two
``runyard worker`` processes (the commands deploy/compose.yaml runs).

1,000 short tasks submitted round robin at concurrency 50 all complete exactly once while one
worker and one gateway are SIGKILLed and restarted midway: none lost, none stuck in processing.
A key's request limit and spend cap and an idempotency key hold across both gateways; a task
submitted to one streams from the other as it runs; an agent chat started on one is approved on
the other; feedback sent to one right after an inference on the other finds it, and a batch
read on both as it completes gets one output file; a session's runs reach its worker from either
gateway and end, typed, when it dies.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from runyard.agents import app_tool, string
from runyard.backends.store import Store
from runyard.backends.usage import key_spend
from runyard.config import hash_api_key
from support.gateway import GatewayProcess
from support.mock_server import Delay
from support.openai_mock import B, MockOpenAI
from support.scaleout import redis_url
from support.tasks_e2e import WorkerProcess, app_env, tasks_toml

TASKS = 1_000
CONCURRENCY = 50
PRICE_IN, PRICE_OUT = 1000.0, 2000.0  # USD per 1M tokens
CALL_COST = (3 * PRICE_IN + 4 * PRICE_OUT) / 1e6  # "one two three" -> "echo: one two three": $0.011


class Cluster:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.gateways = [self._gateway() for _ in range(2)]
        self.workers = [WorkerProcess(config).start() for _ in range(2)]

    def _gateway(self) -> GatewayProcess:
        return GatewayProcess(self.config, env=app_env(), args=["--no-worker"]).start(timeout=60)

    def kill_gateway(self, i: int) -> None:
        proc = self.gateways[i]._proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.gateways[i]._proc = None

    def restart_gateway(self, i: int) -> None:
        self.gateways[i] = self._gateway()

    def stop(self) -> None:
        for g in self.gateways:
            g.stop()
        for w in self.workers:
            w.stop()


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str, redis_prefix: str, mock_openai: MockOpenAI) -> Iterator[Cluster]:
    toml = tasks_toml(tmp_path, lease_s=2.0, max_attempts=5)
    toml += f'\n[providers.mock]\nkind = "openai"\nbase_url = "{mock_openai.url}"\n'
    toml += '\n[models.gpt]\nroutes = ["mock::gpt-test"]\n'
    toml += f'\n[models.priced]\nroutes = ["dummy::echo"]\nprice = {{input = {PRICE_IN}, output = {PRICE_OUT}}}\n'
    # four processes on one Postgres (max_connections 100 by default): at most 4 x (5 + 10) connections
    toml = toml.replace(
        f'url = "sqlite+aiosqlite:///{tmp_path / "runyard.db"}"',
        f'url = "{postgres_url}"\npool_size = 5\nmax_overflow = 10',
    )
    toml += f'\n[redis]\nurl = "{redis_url()}"\nprefix = "{redis_prefix}"\n'
    config = tmp_path / "runyard.toml"
    config.write_text(toml.replace("concurrency = 8", "concurrency = 16", 1))
    c = Cluster(config)
    try:
        yield c
    finally:
        c.stop()


async def _submit_all(cluster: Cluster) -> list[str]:
    """Submit TASKS runs round robin, CONCURRENCY at a time; kills and restarts a worker and a
    gateway once a third are in. A submission the dead gateway did not answer goes to the other."""
    ids: list[str] = []
    slots = asyncio.Semaphore(CONCURRENCY)
    chaos_done = asyncio.Event()

    async def submit(client: httpx.AsyncClient, n: int) -> None:
        async with slots:
            for attempt in range(20):
                gateway = cluster.gateways[(n + attempt) % 2]
                if gateway._proc is None:
                    continue
                try:
                    r = await client.post(gateway.url + "/v1/runs", json={"app": "tests/quick", "input": {"n": n}})
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
                    continue
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
                break
            else:
                raise AssertionError(f"task {n} could not be submitted")
        if len(ids) >= TASKS // 3 and not chaos_done.is_set():
            chaos_done.set()
            cluster.workers[0].kill()  # mid-task: its claims are re-queued when their leases run out
            cluster.kill_gateway(1)
            cluster.workers[0] = WorkerProcess(cluster.config).start()
            await asyncio.to_thread(cluster.restart_gateway, 1)

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        await asyncio.gather(*(submit(client, n) for n in range(TASKS)))
    assert chaos_done.is_set()
    return ids


async def test_tasks_complete_exactly_once_through_kills(cluster: Cluster, postgres_url: str) -> None:
    ids = await _submit_all(cluster)
    assert len(set(ids)) == TASKS
    store = Store(postgres_url)
    try:
        deadline = asyncio.get_running_loop().time() + 180
        while True:
            async with store.engine.connect() as conn:
                open_tasks = (
                    await conn.execute(sa.text("SELECT count(*) FROM tasks WHERE status <> 'completed'"))
                ).scalar_one()
            if open_tasks == 0 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        async with store.engine.connect() as conn:
            statuses = dict((await conn.execute(sa.text("SELECT status, count(*) FROM tasks GROUP BY 1"))).all())
            completions = dict(
                (
                    await conn.execute(
                        sa.text(
                            "SELECT task_id, count(*) FROM task_events WHERE type = 'status' "
                            "AND CAST(data AS jsonb) ->> 'status' = 'completed' GROUP BY 1"
                        )
                    )
                ).all()
            )
            outputs = dict((await conn.execute(sa.text("SELECT id, CAST(output AS text) FROM tasks"))).all())
    finally:
        await store.aclose()
    logs = "\n".join(w.log() for w in cluster.workers)
    assert statuses.get("completed", 0) >= TASKS, (statuses, logs[-2000:])  # 0 lost, 0 stuck
    assert set(statuses) == {"completed"}
    assert all(completions.get(i) == 1 for i in ids)  # each completed exactly once
    assert all(outputs[i] is not None for i in ids)


async def _add_key(cluster: Cluster, postgres_url: str, name: str, key: str, **limits: Any) -> str:
    """A key with ``limits``; the gateways restart (keys switch authentication on at start)."""
    store = Store(postgres_url)
    try:
        key_id = await store.add_api_key(name, hash_api_key(key), **limits)
    finally:
        await store.aclose()
    for i in range(2):
        cluster.gateways[i].stop()
        await asyncio.to_thread(cluster.restart_gateway, i)
    return key_id


async def test_a_key_limit_holds_across_both_gateways(cluster: Cluster, postgres_url: str) -> None:
    limit = 10
    await _add_key(cluster, postgres_url, "limited", "ry_cluster_key", rpm_sync=limit)
    headers = {"Authorization": "Bearer ry_cluster_key"}
    body = {"model": "dummy::echo", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=30) as client:
        answers = await asyncio.gather(
            *(
                client.post(cluster.gateways[n % 2].url + "/v1/chat/completions", json=body, headers=headers)
                for n in range(3 * limit)
            )
        )
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 429}
    assert codes.count(200) == limit


async def test_one_idempotency_key_to_both_gateways_calls_upstream_once(
    cluster: Cluster, mock_openai: MockOpenAI
) -> None:
    mock_openai.script(Delay(1.0), Delay(1.0))  # the first call is still running when the second arrives
    body = {"model": "mock::mock-model", "messages": [{"role": "user", "content": "once"}]}
    headers = {"Idempotency-Key": "cluster-once"}
    async with httpx.AsyncClient(timeout=30) as client:
        answers = await asyncio.gather(
            *(client.post(g.url + "/v1/chat/completions", json=body, headers=headers) for g in cluster.gateways)
        )
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert len(mock_openai.requests) == 1


async def test_feedback_on_the_other_gateway_right_after_the_answer(cluster: Cluster) -> None:
    """TensorZero's pattern, an inference then its feedback, with the two calls on different
    gateways: the first gateway's recorder may still hold the inference; the feedback waits for
    it instead of answering 404. An id nobody made is still a prompt 404."""
    first, other = (g.url for g in cluster.gateways)
    body = {"model_name": "priced", "input": {"messages": [{"role": "user", "content": "one two three"}]}}
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(10):
            answer = await client.post(first + "/inference", json=body)
            assert answer.status_code == 200, answer.text
            comment = {"metric_name": "comment", "value": "seen", "inference_id": answer.json()["inference_id"]}
            feedback = await client.post(other + "/feedback", json=comment)
            assert feedback.status_code == 200, feedback.text
        started = time.monotonic()
        unknown = {"metric_name": "comment", "value": "x", "inference_id": "0190a4c5-5a3b-7cc1-9c3e-2d4b9b2f3a10"}
        missing = await client.post(other + "/feedback", json=unknown)
        assert missing.status_code == 404 and time.monotonic() - started < 1.0


async def test_a_batch_read_on_both_gateways_as_it_completes_gets_one_output_file(cluster: Cluster) -> None:
    """Both gateways are asked for an OpenAI batch, at the same moments, while it runs: the one
    that first sees it completed writes its output file, under a shared lock; the other reads it."""
    first, other = (g.url for g in cluster.gateways)
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "priced", "messages": [{"role": "user", "content": f"line {i}"}]}}
        for i in range(3)
    ]  # fmt: skip
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    async with httpx.AsyncClient(timeout=30) as client:
        upload = await client.post(first + "/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"})
        assert upload.status_code in (200, 201), upload.text
        body = {"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        created = await client.post(first + "/v1/batches", json=body)
        assert created.status_code == 200, created.text
        batch_id = created.json()["id"]
        outputs: set[str] = set()
        for _ in range(600):
            seen = await asyncio.gather(*(client.get(f"{url}/v1/batches/{batch_id}") for url in (first, other)))
            done = [s.json() for s in seen if s.json()["status"] == "completed"]
            outputs |= {d["output_file_id"] for d in done}
            if len(done) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(outputs) == 1 and None not in outputs
        files = (await client.get(first + "/v1/files", params={"purpose": "batch_output"})).json()["data"]
        assert [f["id"] for f in files if f["filename"] == "batch_output.jsonl"] == list(outputs)


async def _stream(client: httpx.AsyncClient, url: str) -> list[tuple[float, dict[str, Any]]]:
    """(arrival time, event) of each SSE event of a task's stream, until it ends."""
    events: list[tuple[float, dict[str, Any]]] = []
    async with client.stream("GET", url) as stream:
        assert stream.status_code == 200
        async for line in stream.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append((time.monotonic(), orjson.loads(line[6:])))
    return events


async def test_a_task_run_through_one_gateway_streams_from_the_other(cluster: Cluster) -> None:
    """Submitted to A, streamed from A and from B at once: B gets every event, in order, each
    within 50 ms of A (the worker's wake-up reaches both over the Redis bus; B's store poll alone
    would lag by up to 100 ms)."""
    a, b = cluster.gateways
    steps = 8
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(a.url + "/v1/runs", json={"app": "tests/steps", "input": {"steps": steps, "delay": 0.2}})
        assert r.status_code == 201, r.text
        task_id = r.json()["id"]
        on_a, on_b = await asyncio.gather(*(_stream(client, f"{g.url}/v1/tasks/{task_id}/events") for g in (a, b)))
    seqs = [e["seq"] for _, e in on_b]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs == [e["seq"] for _, e in on_a]
    logs = [e["message"] for _, e in on_b if e["type"] == "log"]
    assert logs == [f"step {i + 1} of {steps}" for i in range(steps)]
    assert on_b[-1][1]["type"] == "status" and on_b[-1][1]["status"] == "completed"
    # from the second step on (the first step's events may predate a stream's opening), B within 50 ms of A
    first = [i for i, (_, e) in enumerate(on_b) if e["type"] == "log"][1]
    lags = [abs(at_b - at_a) for (at_a, _), (at_b, _) in zip(on_a[first:], on_b[first:], strict=True)]
    assert max(lags) <= 0.05, lags


async def test_a_spend_cap_holds_across_both_gateways(cluster: Cluster, postgres_url: str) -> None:
    """Rounds of concurrent requests on both gateways until the cap is reached: the admitted ones
    spend at most the cap plus one request's cost; the others get the typed usage error."""
    cap = 2.5 * CALL_COST
    key_id = await _add_key(cluster, postgres_url, "capped", "ry_cluster_cap", spend_limit=cap, period="day")
    headers = {"Authorization": "Bearer ry_cluster_cap"}
    body = {"model": "priced", "messages": [{"role": "user", "content": "one two three"}]}
    allowed = 0
    async with httpx.AsyncClient(timeout=30) as client:

        async def round_of(n: int) -> list[httpx.Response]:
            urls = [cluster.gateways[i % 2].url + "/v1/chat/completions" for i in range(n)]
            return await asyncio.gather(*(client.post(url, json=body, headers=headers) for url in urls))

        for _ in range(40):
            answers = await round_of(20)
            allowed += sum(a.status_code == 200 for a in answers)
            refused = [a for a in answers if a.status_code != 200]
            assert all(a.status_code == 429 for a in refused), [a.text for a in refused]
            assert {a.json()["error"]["code"] for a in refused} <= {"USAGE_LIMIT_EXCEEDED"}
            limits = (await client.get(cluster.gateways[0].url + "/v1/usage/limits", headers=headers)).json()
            if limits["usage"]["isExceeded"]:
                break
            await asyncio.sleep(0.05)
        assert [a.status_code for a in await round_of(10)] == [429] * 10
    assert allowed == 3  # $0.022 spent < the $0.0275 cap admits the third; $0.033 is within one request
    store = Store(postgres_url)
    try:
        deadline = time.monotonic() + 10
        while True:  # recording is asynchronous: wait for the rows
            day = (await key_spend(store, key_id, datetime(2000, 1, 1, tzinfo=timezone.utc), _today()))[1]
            if day >= allowed * CALL_COST - 1e-9 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        await store.aclose()
    assert cap <= day <= cap + CALL_COST + 1e-9


def _today() -> datetime:
    now = datetime.now(timezone.utc)
    return datetime(now.year, now.month, now.day, tzinfo=timezone.utc)


async def test_an_agent_chat_started_on_one_gateway_is_approved_on_the_other(
    cluster: Cluster, mock_openai: MockOpenAI
) -> None:
    """The chat pauses for approval on A; B's approval resumes it (the tool runs as a task on a
    worker) and the turn finishes; A reads the finished chat."""
    a, b = cluster.gateways
    deploy = app_tool("deploy", "tests/echo@1.0.0").param("text", string()).require_approval().build()
    mock_openai.script(B.reply(tool_calls=[{"id": "call_d1", "name": "deploy", "arguments": {"text": "v1"}}]))
    async with httpx.AsyncClient(timeout=30) as client:
        made = await client.post(a.url + "/v1/chats", json={"agent": {"model": "gpt", "tools": [deploy]}})
        assert made.status_code == 201, made.text
        chat_id = made.json()["id"]
        paused = await client.post(f"{a.url}/v1/chats/{chat_id}/messages", json={"text": "deploy v1"})
        assert paused.status_code == 200, paused.text
        assert paused.json()["status"] == "awaiting_approval"
        approval = {"call_id": "call_d1", "approved": True, "by": "alice"}
        done = await client.post(f"{b.url}/v1/chats/{chat_id}/approvals", json=approval)
        assert done.status_code == 200, done.text
        again = await client.post(f"{a.url}/v1/chats/{chat_id}/approvals", json=approval)
        seen_on_a = (await client.get(f"{a.url}/v1/chats/{chat_id}")).json()
    chat = done.json()
    call = chat["tool_calls"][0]
    assert chat["status"] == "idle"
    assert call["approval"]["approved"] is True and call["approval"]["by"] == "alice"
    assert call["result"]["text"] == "v1"  # the app ran on a worker
    assert chat["messages"][-1]["role"] == "assistant"  # the model answered after the tool
    assert len(mock_openai.requests) == 2
    assert again.status_code == 409 and again.json()["error"]["code"] == "approval_not_pending"
    assert seen_on_a["status"] == "idle" and seen_on_a["messages"] == chat["messages"]


async def test_a_session_lives_in_one_worker_and_ends_typed_when_it_dies(cluster: Cluster) -> None:
    """A session's runs reach the worker holding its instance from either gateway; once that worker
    is SIGKILLed, a run for it ends with SESSION_EXPIRED within a bounded time (its lease, 2 s,
    plus a sweep), never a hang, and later runs are refused at once."""
    run = {"app": "tests/counter", "wait": 30}
    async with httpx.AsyncClient(timeout=60) as client:
        first = await client.post(
            cluster.gateways[0].url + "/v1/runs",
            json={**run, "input": {"add": 2}, "session": "new", "session_timeout": 600},
        )
        assert first.status_code == 200 and first.json()["status"] == "completed", first.text
        session, pid = first.json()["session_id"], first.json()["output"]["pid"]
        for n in range(4):
            r = await client.post(
                cluster.gateways[n % 2].url + "/v1/runs", json={**run, "input": {"add": 1}, "session": session}
            )
            assert r.status_code == 200 and r.json()["output"] == {"total": 3 + n, "pid": pid}, r.text
        holder = next(w for w in cluster.workers if w.pid == pid)
        holder.kill()
        started = time.monotonic()
        r = await client.post(
            cluster.gateways[1].url + "/v1/runs", json={**run, "input": {"add": 1}, "session": session}
        )
        elapsed = time.monotonic() - started
        if r.status_code == 200:  # queued before the sweeper saw the lease lapse: failed by it
            assert r.json()["status"] == "failed", r.text
            code = r.json()["error"]["code"]
        else:
            assert r.status_code == 410, r.text
            code = r.json()["error"]["code"]
        assert code == "SESSION_EXPIRED"
        assert elapsed < 8, elapsed
        later = await client.post(
            cluster.gateways[0].url + "/v1/runs", json={**run, "input": {"add": 1}, "session": session}
        )
    assert later.status_code == 410 and later.json()["error"]["code"] == "SESSION_EXPIRED"
