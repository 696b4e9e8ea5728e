"""Rows of the OpenAI surface: stored responses, file purposes and batches (``backends/openai_schema``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..backends import openai_schema as t
from ..backends.schema import files as native_files
from ..backends.store import utcnow

MAX_LISTED = 10_000


def _plain(row: sa.Row[Any]) -> dict[str, Any]:
    return {str(k): v for k, v in row._mapping.items()}


class OpenAIRecords:
    """Reads and writes the OpenAI surface's tables over the store's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- responses ----------------------------------------------------------
    async def put_response(
        self,
        response_id: str,
        *,
        inference_id: str,
        api_key_id: str | None,
        body: dict[str, Any],
        input_items: list[dict[str, Any]],
        conversation: list[dict[str, Any]],
    ) -> None:
        values = dict(
            id=response_id,
            inference_id=inference_id,
            api_key_id=api_key_id,
            body=body,
            input_items=input_items,
            conversation=conversation,
            created_at=utcnow(),
        )
        async with self.engine.begin() as conn:
            await conn.execute(t.responses.insert().values(**values))

    async def get_response(self, response_id: str) -> dict[str, Any] | None:
        query = sa.select(t.responses).where(t.responses.c.id == response_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _plain(row) if row else None

    async def delete_response(self, response_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(t.responses.delete().where(t.responses.c.id == response_id))

    # -- files --------------------------------------------------------------
    async def add_file(self, file_id: str, purpose: str, api_key_id: str | None) -> None:
        values = dict(file_id=file_id, purpose=purpose, api_key_id=api_key_id, created_at=utcnow())
        async with self.engine.begin() as conn:
            await conn.execute(t.files.insert().values(**values))

    async def file_purpose(self, file_id: str) -> str | None:
        query = sa.select(t.files.c.purpose).where(t.files.c.file_id == file_id)
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return str(value) if value is not None else None

    async def list_files(self, purpose: str | None, *, newest_first: bool = True) -> list[dict[str, Any]]:
        """Files uploaded with a purpose (their native metadata joined in)."""
        joined = t.files.join(native_files, native_files.c.id == t.files.c.file_id)
        query = sa.select(t.files.c.purpose, native_files).select_from(joined)
        if purpose:
            query = query.where(t.files.c.purpose == purpose)
        order = t.files.c.created_at.desc() if newest_first else t.files.c.created_at.asc()
        query = query.order_by(order, t.files.c.file_id).limit(MAX_LISTED)
        async with self.engine.connect() as conn:
            return [_plain(r) for r in await conn.execute(query)]

    async def delete_file(self, file_id: str) -> None:
        """Forget the file: its purpose and its metadata (``GET /v1/files/{id}`` then answers 404)."""
        async with self.engine.begin() as conn:
            await conn.execute(t.files.delete().where(t.files.c.file_id == file_id))
            await conn.execute(native_files.delete().where(native_files.c.id == file_id))

    # -- batches ------------------------------------------------------------
    async def add_batch(self, batch_id: str, task_id: str, api_key_id: str | None, body: dict[str, Any]) -> None:
        values = dict(id=batch_id, task_id=task_id, api_key_id=api_key_id, body=body, created_at=utcnow())
        async with self.engine.begin() as conn:
            await conn.execute(t.batches.insert().values(**values))

    async def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        query = sa.select(t.batches).where(t.batches.c.id == batch_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _plain(row) if row else None

    async def update_batch(self, batch_id: str, body: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(t.batches.update().where(t.batches.c.id == batch_id).values(body=body))

    async def list_batches(self) -> list[dict[str, Any]]:
        query = sa.select(t.batches).order_by(t.batches.c.created_at.desc(), t.batches.c.id).limit(MAX_LISTED)
        async with self.engine.connect() as conn:
            return [_plain(r) for r in await conn.execute(query)]
