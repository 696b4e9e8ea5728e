"""Rows of a gateway's store read through Runyard's own Store (so a scale-out test run, whose
stores live on Postgres, reads the same rows as the embedded run reads from the SQLite file)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from runyard.backends.schema import inferences
from runyard.backends.store import Store


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
