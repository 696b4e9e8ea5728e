"""Inference rows per second into Postgres through the recorder's write path (``Store.insert_inferences``).

    RUNYARD_BENCH_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1/postgres \\
        .venv/bin/python bench/pg_recorder.py [--rows 20000] [--batches 1,100,500,2000]

Creates a scratch database, writes ``--rows`` rows in batches of each size (one transaction per
batch, as the recorder does), prints rows/s per batch size, and drops the database. Batch size 1
is the row-at-a-time baseline; each batch is one binary COPY (asyncpg's copy_records_to_table; it
was one executemany INSERT: 18,177 / 28,744 / 35,133 rows/s at 100 / 500 / 2,000 rows a batch,
COPY 39,044 / 53,046 / 51,244 in the same session, 2026-12-06).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import asyncpg
from sqlalchemy.engine import make_url

from runyard.backends.store import Store, new_id, utcnow


def _row(i: int) -> dict[str, object]:
    return {
        "id": new_id(), "episode_id": new_id(), "kind": "chat", "model": "bench", "provider": "mock",
        "provider_model": "m", "input": {"messages": [{"role": "user", "content": "x" * 200}]},
        "output": {"content": "y" * 200}, "input_tokens": 50, "output_tokens": 50, "cached_tokens": 0,
        "reasoning_tokens": 0, "latency_ms": 1.0, "ttft_ms": None, "status": "ok", "error": None,
        "attempts": [], "api_key_id": "k", "tags": {"n": str(i)}, "created_at": utcnow(), "cost": 0.0,
        "cache_hit": False,
    }  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batches", default="1,100,500,2000")
    args = parser.parse_args()
    admin = make_url(os.environ.get("RUNYARD_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1/postgres"))
    name = "runyard_bench_" + uuid.uuid4().hex[:8]
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    store = Store(admin.set(database=name).render_as_string(hide_password=False))
    try:
        await store.start()
        for size in (int(b) for b in args.batches.split(",")):
            rows = [_row(i) for i in range(args.rows if size > 1 else min(args.rows, 2_000))]
            started = time.perf_counter()
            for at in range(0, len(rows), size):
                await store.insert_inferences(rows[at : at + size])
            elapsed = time.perf_counter() - started
            print(f"batch {size:>5}: {len(rows) / elapsed:>9,.0f} rows/s ({len(rows)} rows in {elapsed:.2f} s)")
    finally:
        await store.aclose()
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
