"""Rows of a gateway's store read through Runyard's own Store (so a scale-out test run, whose
stores live on Postgres, reads the same rows as the embedded run reads from the SQLite file), and
inference rows to write into one."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from runyard.backends.schema import inferences
from runyard.backends.store import Store, new_id, utcnow


def inference_rows(db: Path, *columns: str) -> list[tuple[Any, ...]]:
    """``columns`` of every inference in the store at ``db``, oldest first."""

    async def read() -> list[tuple[Any, ...]]:
        store = Store(f"sqlite+aiosqlite:///{db}")
        try:
            async with store.engine.connect() as conn:
                query = sa.select(*(inferences.c[c] for c in columns)).order_by(inferences.c.created_at)
                return [tuple(row) for row in await conn.execute(query)]
        finally:
            await store.aclose()

    return asyncio.run(read())


def inference_row(
    key: str | None,
    *,
    model: str = "m",
    cost: float = 0.5,
    latency: float = 1.0,
    minutes_ago: float = 0.0,
    status: str = "ok",
) -> dict[str, Any]:
    """A chat inference's row for ``Store.insert_inferences`` (10 input and 5 output tokens)."""
    return {
        "id": new_id(),
        "episode_id": None,
        "kind": "chat",
        "model": model,
        "provider": "p",
        "provider_model": model,
        "input": {"messages": []},
        "output": {"content": "x"},
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "latency_ms": latency,
        "ttft_ms": None,
        "status": status,
        "error": None,
        "attempts": [],
        "api_key_id": key,
        "tags": {},
        "created_at": utcnow() - timedelta(minutes=minutes_ago),
        "cost": cost,
        "cache_hit": False,
    }
