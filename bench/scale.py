#!/usr/bin/env python3
"""Scale-out throughput: chat at concurrency 32 with limits on, through real ``runyard serve``
processes (not a test; figures go in bench/README.md "Scale out").

    .venv/bin/python bench/scale.py [--seconds 20] [--concurrency 32] \
        [--postgres postgresql+asyncpg://postgres@127.0.0.1/postgres] [--redis redis://127.0.0.1:6379/0]

Runs three setups one after another, in the same session so the figures compare:
  1. one process over SQLite, state in process (the embedded default);
  2. one gateway process on Postgres + Redis;
  3. two gateway processes (``serve --workers 2``) on Postgres + Redis.
Every request carries an API key whose request, token and spend limits are on (high enough never
to refuse), so each one pays the limit check. Prints req/s, p50/p99 latency, Redis commands per
request (``INFO stats`` total_commands_processed delta / requests, on a private ``redis-server``
unless ``--redis`` names one; background work such as usage flushes and key reloads included)
and the recorder backlog (``runyard_recorder_backlog_rows`` on /metrics) at the end of the load
and its peak sampled every 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from runyard.backends.store import Store
from runyard.config import hash_api_key

KEY = "ry_bench_scale_key"
CHAT = {"model": "dummy::echo", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


def _config(folder: Path, store_url: str, redis: str | None, prefix: str) -> Path:
    text = (
        f'[storage]\nurl = "{store_url}"\n'
        "[limits]\nrpm_sync = 100000000\ntpm = 100000000000\n"
        "[telemetry]\nmetrics = true\n"
    )
    if redis:
        text += f'[redis]\nurl = "{redis}"\nprefix = "{prefix}"\n'
    path = folder / f"runyard-{prefix.strip(':')}.toml"
    path.write_text(text)
    return path


async def _add_key(store_url: str) -> None:
    store = Store(store_url)
    try:
        await store.start()
        await store.add_api_key("bench", hash_api_key(KEY), rpm_sync=10**8, spend_limit=10**9)
    finally:
        await store.aclose()


def _serve(config: Path, port: int, processes: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "runyard", "serve", "--config", str(config), "--port", str(port), "--no-worker"]
    if processes > 1:
        args += ["--workers", str(processes)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=config.parent)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("runyard serve did not become ready")


def _redis_commands(url: str | None) -> tuple[int, int]:
    """(commands processed, Lua lines included; EVALSHA calls: the limit check's one round trip and
    the batched usage flushes) so far."""
    if not url:
        return 0, 0
    import redis

    client = redis.Redis.from_url(url)
    try:
        evalsha = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        return int(client.info("stats")["total_commands_processed"]), int(evalsha)
    finally:
        client.close()


def _backlog(metrics: str) -> int:
    found = re.search(r"^runyard_recorder_backlog_rows\S*\s+([0-9.e+]+)", metrics, re.M)
    return int(float(found.group(1))) if found else 0


SHARED_BENCH = Path(os.environ.get("SHARED_BENCH", Path(__file__).resolve().parents[1].parent / "shared" / "bench"))


async def _load(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """The shared harness's load generator (``loadgen.py``: wrk when installed, else asyncio +
    httptools, as in ``overhead.py``; an httpx client here took more CPU than the gateway) while
    the recorder's backlog is sampled from /metrics every 0.5 s."""
    args = [
        sys.executable, str(SHARED_BENCH / "loadgen.py"), "--base-url", f"{url}/v1", "--model", CHAT["model"],
        "--mode", "chat", "-c", str(concurrency), "-d", str(seconds), "--warmup", "0", "--settle", "0",
        "--engine", "auto", "--no-precheck", "--header", f"Authorization: Bearer {KEY}",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    peak = 0
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:

        async def sample() -> None:
            nonlocal peak
            while proc.returncode is None:
                await asyncio.sleep(0.5)
                peak = max(peak, _backlog((await client.get("/metrics")).text))

        sampler = asyncio.create_task(sample())
        out, _ = await proc.communicate()
        sampler.cancel()
        end_backlog = _backlog((await client.get("/metrics")).text)
    line = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "requests": line["requests"],
        "errors": sum(line["errors"].values()) if isinstance(line["errors"], dict) else line["errors"],
        "rps": line["rps"],
        "p50_ms": line["lat_ms"]["p50"],
        "p99_ms": line["lat_ms"]["p99"],
        "backlog_end": end_backlog,
        "backlog_peak": max(peak, end_backlog),
    }


async def _database(admin_url: str, name: str, create: bool) -> str:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            if create:
                await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            else:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def run_setup(label: str, store_url: str, redis: str | None, processes: int, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"bench-{uuid.uuid4().hex[:8]}:"
        config = _config(Path(tmp), store_url, redis, prefix)
        asyncio.run(_add_key(store_url))
        port = 18000 + os.getpid() % 1000
        proc = _serve(config, port, processes)
        try:
            asyncio.run(_load(f"http://127.0.0.1:{port}", 2.0, args.concurrency))  # warm up
            before = _redis_commands(redis)
            result = asyncio.run(_load(f"http://127.0.0.1:{port}", args.seconds, args.concurrency))
            after = _redis_commands(redis)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        n = max(result["requests"], 1)
        per_request, scripts = (after[0] - before[0]) / n, (after[1] - before[1]) / n
        print(
            f"{label:<34} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms"
            f"  errors {result['errors']}  redis cmds/req {per_request:4.2f} (EVALSHA {scripts:4.2f})"
            f"  recorder backlog end {result['backlog_end']} peak {result['backlog_peak']}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1/postgres")
    parser.add_argument("--redis", help="a Redis URL (default: a private redis-server, so the counts are ours)")
    args = parser.parse_args()
    private = None
    if not args.redis:
        port = 16379 + os.getpid() % 1000
        private = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
        )
        time.sleep(0.5)
        args.redis = f"redis://127.0.0.1:{port}/0"
    try:
        _run_all(args)
    finally:
        if private is not None:
            private.terminate()
            private.wait(timeout=10)


def _run_all(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_setup("1 process, SQLite, in-process state", f"sqlite+aiosqlite:///{tmp}/runyard.db", None, 1, args)
    for processes in (1, 2):
        name = f"runyard_bench_{uuid.uuid4().hex[:8]}"
        url = asyncio.run(_database(args.postgres, name, create=True))
        try:
            run_setup(f"{processes} gateway(s), Postgres + Redis", url, args.redis, processes, args)
        finally:
            asyncio.run(_database(args.postgres, name, create=False))


if __name__ == "__main__":
    main()
