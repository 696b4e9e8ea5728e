"""The OpenAI surface's tables (migration 0008_openai) on SQLite and on the real PostgreSQL server:
migrated on start beside the other branches, and read back as written."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runyard.backends.store import Store
from runyard.config import FilesConfig
from runyard.services.files import FileService
from runyard.services.openai_records import OpenAIRecords

PG_ADMIN = "postgresql://root@127.0.0.1:5432/postgres"


async def _pg_database() -> str | None:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN, timeout=3)
    except Exception:  # no server here: the SQLite case still runs
        return None
    name = f"runyard_oai_{uuid.uuid4().hex[:12]}"
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name


async def _drop(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def _stores(kind: str, tmp: Path) -> AsyncIterator[Store]:
    if kind == "sqlite":
        store = Store(f"sqlite+aiosqlite:///{tmp / 'r.db'}")
        await store.start()
        yield store
        await store.aclose()
        return
    name = await _pg_database()
    if name is None:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    store = Store(f"postgresql+asyncpg://root@127.0.0.1:5432/{name}")
    try:
        await store.start()
        yield store
    finally:
        await store.aclose()
        await _drop(name)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_records_round_trip(kind: str, tmp_path: Path) -> None:
    async def run() -> None:
        async for store in _stores(kind, tmp_path):
            records = OpenAIRecords(store.engine)
            conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "echo: hi"}]
            await records.put_response(
                "resp_1",
                inference_id="inf",
                api_key_id="k",
                body={"id": "resp_1"},
                input_items=[],
                conversation=conversation,
            )
            row = await records.get_response("resp_1")
            assert row is not None and row["conversation"] == conversation and row["api_key_id"] == "k"
            await records.delete_response("resp_1")
            assert await records.get_response("resp_1") is None

            files = FileService.from_config(store, FilesConfig(dir=str(tmp_path / "blobs")))
            await files.start()
            record = await files.put(b'{"custom_id": "1"}\n', "in.jsonl", "application/jsonl", api_key_id="k")
            await records.add_file(record.id, "batch", "k")
            assert await records.file_purpose(record.id) == "batch"
            listed = await records.list_files("batch")
            assert [(r["id"], r["purpose"], r["size"]) for r in listed] == [(record.id, "batch", record.size)]
            assert await records.list_files("vision") == []
            await records.delete_file(record.id)
            assert await records.file_purpose(record.id) is None and await records.list_files(None) == []

            await records.add_batch("batch_1", "task", "k", {"endpoint": "/v1/chat/completions"})
            await records.update_batch("batch_1", {"endpoint": "/v1/chat/completions", "output_file_id": "f"})
            batch = await records.get_batch("batch_1")
            assert batch is not None and batch["body"]["output_file_id"] == "f" and batch["task_id"] == "task"
            assert [b["id"] for b in await records.list_batches()] == ["batch_1"]
            await files.aclose()

    asyncio.run(run())
