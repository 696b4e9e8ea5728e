"""Console pages under a full store: server time of every page with 10,000 inferences and 1,000 tasks.

    python bench/console.py [--inferences 10000] [--tasks 1000] [--rounds 5] [--db sqlite|URL]

Seeds a fresh store (SQLite in a temp folder unless ``--db`` names a database URL), then
renders each console page in-process (the ASGI app, no network: server time only) as the
admin and as a workspace key, and prints the median and worst time per page. The target is
under 1 s per page; list pages read one bounded page (LIMIT + cursor), never every row.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from runyard.backends.schema import tasks as task_rows
from runyard.backends.store import new_id, utcnow
from runyard.config import hash_api_key, load_config
from runyard.server.app import create_app
from runyard.workflows import Workflow

ADMIN_KEY = "ry_bench-admin"
TARGET_S = 1.0
MODELS = ["gpt-4o-mini", "claude-haiku", "llama-3-8b", "mistral-small", "qwen-7b"]


def config_text(root: Path, db: str | None) -> str:
    url = db or f"sqlite+aiosqlite:///{root / 'bench.db'}"
    return f"""
[server]
api_keys = ["{hash_api_key(ADMIN_KEY)}"]

[storage]
url = "{url}"

[files]
dir = "{root / "files"}"
"""


async def seed(app: Any, n_inferences: int, n_tasks: int) -> dict[str, Any]:
    gw = app.state.gateway
    store = gw.store
    keys = []
    for i in range(4):
        key_id = await store.add_api_key(f"key-{i}", hash_api_key(f"ry_bench-{i}"), workspace=f"ws-{i % 2}")
        keys.append(key_id)
    rng = random.Random(7)
    now = utcnow()
    rows = []
    for i in range(n_inferences):
        created = now - timedelta(seconds=rng.uniform(0, 2 * 86400))
        failed = rng.random() < 0.03
        model = rng.choice(MODELS)
        rows.append(
            {
                "id": new_id(),
                "episode_id": new_id(),
                "kind": "chat",
                "model": model,
                "provider": "mock",
                "provider_model": model,
                "input": {"messages": [{"role": "user", "content": f"question {i} " + "lorem ipsum " * 20}]},
                "output": {"content": "answer " * 40},
                "input_tokens": rng.randint(10, 800),
                "output_tokens": rng.randint(5, 400),
                "cached_tokens": 0,
                "reasoning_tokens": 0,
                "latency_ms": rng.lognormvariate(5, 0.6),
                "ttft_ms": rng.uniform(20, 200),
                "status": "error" if failed else "ok",
                "error": "upstream_error" if failed else None,
                "attempts": [{"provider": "mock", "model": model, "error": None, "code": None}],
                "api_key_id": rng.choice(keys),
                "tags": {},
                "created_at": created,
                "cost": rng.uniform(0, 0.01),
                "cache_hit": rng.random() < 0.1,
            }
        )
    for start in range(0, len(rows), 2000):
        await store.insert_inferences(rows[start : start + 2000])
    task_values = []
    for i in range(n_tasks):
        status = rng.choice(["completed", "completed", "failed", "queued", "cancelled"])
        created = now - timedelta(seconds=rng.uniform(0, 86400))
        task_values.append(
            {
                "id": new_id(),
                "app": "bench/app",
                "version": "1.0.0",
                "status": status,
                "pool": rng.choice(["cpu", "gpu"]),
                "input": {"text": f"task {i}"},
                "output": {"ok": True} if status == "completed" else None,
                "progress": 1.0 if status == "completed" else 0.0,
                "attempts": 1,
                "max_attempts": 3,
                "api_key_id": rng.choice(keys),
                "cancel_requested": False,
                "created_at": created,
            }
        )
    async with store.engine.begin() as conn:
        await conn.execute(task_rows.insert(), task_values)
    flow = Workflow("bench/flow").input(text="string")
    for i in range(12):
        flow = flow.function(
            f"b{i}", "apps.flows:shout", text="{{ start.text }}" if i < 3 else f"{{{{ b{i - 3}.text }}}}"
        )
    await gw.workflows.save(flow.output(value="{{ b11.text }}").to_dict())
    await gw.workflows.publish("bench/flow")
    # rows of key-0 (workspace ws-0), so both the admin and the workspace key may open them
    inference = next(r["id"] for r in rows if r["api_key_id"] == keys[0])
    task = next(t["id"] for t in task_values if t["api_key_id"] == keys[0])
    return {"inference": inference, "task": task}


async def sign_in(client: httpx.AsyncClient, key: str) -> None:
    page = await client.get("/ui/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    response = await client.post("/ui/signin", data={"csrf": token.group(1), "key": key})
    assert response.status_code == 303, response.text


async def measure(client: httpx.AsyncClient, path: str, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = await client.get(path)
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}\n{response.text[:500]}")
    return times


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inferences", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db", help="a database URL (default: SQLite in a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "runyard.toml").write_text(config_text(root, args.db))
        app = create_app(load_config(root / "runyard.toml"), worker=False)
        async with app.router.lifespan_context(app):
            started = time.perf_counter()
            ids = await seed(app, args.inferences, args.tasks)
            print(
                f"seeded {args.inferences:,} inferences, {args.tasks:,} tasks in {time.perf_counter() - started:.1f} s"
            )
            await app.state.gateway.auth.refresh()
            pages = [
                "/ui/",
                "/ui/inferences",
                "/ui/inferences?model=claude-haiku&status=error",
                "/ui/inferences?has_feedback=false&limit=200",
                f"/ui/inferences/{ids['inference']}",
                "/ui/tasks",
                "/ui/tasks?status=failed",
                f"/ui/tasks/{ids['task']}",
                "/ui/workflows",
                "/ui/workflow?name=bench/flow",
                "/ui/agents",
                "/ui/usage",
                "/ui/usage?group_by=key",
                "/ui/usage.csv?group_by=model",
                "/ui/keys",
            ]
            worst = 0.0
            transport = httpx.ASGITransport(app=app)
            for who, key in (("admin", ADMIN_KEY), ("workspace", "ry_bench-0")):
                async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                    await sign_in(client, key)
                    print(f"\n{who}: {'page':<50} {'median':>9} {'max':>9}")
                    for path in pages:
                        if who == "workspace" and path == "/ui/keys":
                            continue
                        times = await measure(client, path, args.rounds)
                        worst = max(worst, max(times))
                        flag = "" if max(times) < TARGET_S else "  OVER TARGET"
                        print(f"  {path:<56} {statistics.median(times) * 1000:7.1f}ms {max(times) * 1000:7.1f}ms{flag}")
            print(f"\nslowest page: {worst * 1000:.0f} ms (target < {TARGET_S * 1000:.0f} ms)")
            return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
