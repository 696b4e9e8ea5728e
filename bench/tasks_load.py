"""Task load test: N short tasks submitted with concurrency C over HTTP to a real ``runyard serve``
(in-process worker pool, SQLite WAL store). Checks every task completes exactly once with its
own output, then prints tasks/s and submit→complete latency percentiles.

    .venv/bin/python bench/tasks_load.py                 # 1,000 tasks, concurrency 50
    .venv/bin/python bench/tasks_load.py -n 200 -c 20 --workers 8

Exit status 1 if any task is lost, duplicated, failed or wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
TERMINAL = {"completed", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(root: Path, workers: int) -> str:
    return f"""
[storage]
url = "sqlite+aiosqlite:///{root / "bench.db"}"
record_inferences = false

[files]
dir = "{root / "files"}"

[apps]
modules = ["bench_apps"]

[workers]
concurrency = {workers}
"""


async def one(client: httpx.AsyncClient, n: int, latencies: list[float], outputs: dict[int, str]) -> None:
    started = time.perf_counter()
    r = await client.post("/v1/runs", json={"app": "bench/quick", "input": {"n": n}, "wait": 30})
    r.raise_for_status()
    task = r.json()
    while task["status"] not in TERMINAL:
        await asyncio.sleep(0.05)
        task = (await client.get(f"/v1/tasks/{task['id']}")).json()
    latencies.append(time.perf_counter() - started)
    if task["status"] != "completed" or task["output"] != {"n": n}:
        raise RuntimeError(f"task {task['id']} for n={n}: {task['status']} {task['output']} {task['error']}")
    outputs[n] = task["id"]


async def load(url: str, total: int, concurrency: int) -> tuple[float, list[float], dict[int, str]]:
    latencies: list[float] = []
    outputs: dict[int, str] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(total):
        queue.put_nowait(n)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def runner() -> None:
            while not queue.empty():
                await one(client, queue.get_nowait(), latencies, outputs)

        started = time.perf_counter()
        await asyncio.gather(*(runner() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, outputs


async def stored_tasks(url: str) -> list[dict]:
    out: list[dict] = []
    cursor = None
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while True:
            params = {"app": "bench/quick", "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/tasks", params=params)).json()
            out += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--tasks", type=int, default=1000)
    ap.add_argument("-c", "--concurrency", type=int, default=50)
    ap.add_argument("--workers", type=int, default=16, help="[workers] concurrency of the server's pool")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="runyard-tasks-bench-"))
    config = root / "runyard.toml"
    config.write_text(config_text(root, args.workers))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    log = (root / "server.log").open("wb")
    cmd = [sys.executable, "-m", "runyard", "serve", "--config", str(config), "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                print((root / "server.log").read_text()[-3000:])
                return 1
            time.sleep(0.1)
        elapsed, latencies, outputs = asyncio.run(load(url, args.tasks, args.concurrency))
        stored = asyncio.run(stored_tasks(url))
    finally:
        server.terminate()
        server.wait(timeout=15)
    ids = [t["id"] for t in stored]
    ns = sorted(t["output"]["n"] for t in stored if t["status"] == "completed")
    ok = (
        len(outputs) == args.tasks
        and len(set(ids)) == len(ids) == args.tasks
        and ns == list(range(args.tasks))
        and set(outputs.values()) == set(ids)
    )
    print(f"tasks: {args.tasks}  concurrency: {args.concurrency}  worker slots: {args.workers}")
    verdict = "OK" if ok else "FAIL"
    print(f"completed: {len(outputs)}  stored: {len(ids)}  distinct outputs: {len(set(ns))}  -> {verdict}")
    print(f"throughput: {args.tasks / elapsed:.1f} tasks/s  ({elapsed:.2f} s)")
    print(
        "submit->complete latency ms: "
        f"p50 {pct(latencies, 50) * 1000:.1f}  p90 {pct(latencies, 90) * 1000:.1f}  "
        f"p99 {pct(latencies, 99) * 1000:.1f}  max {max(latencies) * 1000:.1f}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
