"""Files: uploads stored content-addressed in a :class:`BlobStore`, metadata in the ``files`` table.

Every file has an id (a UUIDv7) and the URI ``runyard://files/<id>``; the same bytes uploaded
twice are two records over one blob. Names are sanitised, types sniffed when not given, and
the size limit (``[files] max_upload_bytes``) is enforced while the bytes stream in.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from ..backends.blobs import BlobStore, BlobWriter, LocalBlobStore
from ..backends.schema import files as files_table
from ..backends.store import Store, new_id, utcnow
from ..config import FilesConfig
from ..errors import InvalidRequestError, NotFoundError
from ..files import (
    File,
    clean_content_type,
    extension_for,
    file_uri,
    is_generic_content_type,
    parse_data_uri,
    parse_file_ref,
    sanitize_filename,
    sniff_content_type,
)

__all__ = ["FileRecord", "FileService"]

_PATH_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime
    api_key_id: str | None = None

    @property
    def uri(self) -> str:
        return file_uri(self.id)

    def to_dict(self, access_url: str | None = None) -> dict[str, Any]:
        """The API's JSON shape (``GET /v1/files/{id}``)."""
        data: dict[str, Any] = {
            "id": self.id,
            "object": "file",
            "uri": self.uri,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "created_at": self.created_at.isoformat(),
        }
        if access_url is not None:
            data["access_url"] = access_url
        return data


def decide_content_type(declared: str | None, head: bytes, filename: str | None) -> str:
    """The declared type unless missing, malformed or generic; else sniffed from the bytes."""
    cleaned = clean_content_type(declared)
    if cleaned and not is_generic_content_type(cleaned):
        return cleaned
    return sniff_content_type(head, filename)


class FileService:
    def __init__(self, store: Store, blobs: BlobStore, config: FilesConfig) -> None:
        self.store = store
        self.blobs = blobs
        self.config = config

    @classmethod
    def from_config(cls, store: Store, config: FilesConfig) -> FileService:
        return cls(store, LocalBlobStore(config.dir), config)

    @property
    def max_upload_bytes(self) -> int:
        return self.config.max_upload_bytes

    async def start(self) -> None:
        await self.blobs.start()

    async def aclose(self) -> None:
        await self.blobs.aclose()

    # ------------------------------------------------------------------ writing

    def writer(self, *, max_bytes: int | None = None) -> BlobWriter:
        """A streaming upload, capped at ``max_bytes`` (default: the configured limit)."""
        return self.blobs.writer(max_bytes=self.max_upload_bytes if max_bytes is None else max_bytes)

    async def commit(
        self,
        writer: BlobWriter,
        filename: str | None,
        content_type: str | None,
        *,
        api_key_id: str | None = None,
    ) -> FileRecord:
        """Finish a :meth:`writer` upload and record it."""
        try:
            info = await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        kind = decide_content_type(content_type, writer.head, filename)
        name = sanitize_filename(filename, default="")
        if not name:
            name = "file" + extension_for(kind)
        record = FileRecord(
            id=str(new_id()),
            filename=name,
            content_type=kind,
            size=info.size,
            sha256=info.key,
            created_at=utcnow(),
            api_key_id=api_key_id,
        )
        async with self.store.engine.begin() as conn:
            await conn.execute(
                files_table.insert().values(
                    id=record.id,
                    sha256=record.sha256,
                    size=record.size,
                    filename=record.filename,
                    content_type=record.content_type,
                    api_key_id=record.api_key_id,
                    created_at=record.created_at,
                )
            )
        return record

    async def put(
        self,
        data: bytes | AsyncIterable[bytes],
        filename: str | None = None,
        content_type: str | None = None,
        *,
        api_key_id: str | None = None,
        max_bytes: int | None = None,
    ) -> FileRecord:
        """Store bytes or an async iterator of chunks (413 ``file_too_large`` past the limit)."""
        writer = self.writer(max_bytes=max_bytes)
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                await writer.write(bytes(data))
            else:
                async for chunk in data:
                    await writer.write(chunk)
        except BaseException:
            await writer.abort()
            raise
        return await self.commit(writer, filename, content_type, api_key_id=api_key_id)

    async def put_path(
        self, path: str | os.PathLike[str], filename: str | None = None, content_type: str | None = None
    ) -> FileRecord:
        """Store a local file (streamed)."""
        p = Path(path)
        fh = await asyncio.to_thread(open, p, "rb")
        try:

            async def chunks() -> AsyncIterator[bytes]:
                while chunk := await asyncio.to_thread(fh.read, _PATH_CHUNK):
                    yield chunk

            return await self.put(chunks(), filename or p.name, content_type)
        finally:
            fh.close()

    # ------------------------------------------------------------------ reading

    @staticmethod
    def resolve_uri(value: Any) -> str | None:
        """The id in ``runyard://files/<id>`` (or in this gateway's file URL), else ``None``."""
        return parse_file_ref(value)

    async def get(self, file_id: str) -> FileRecord:
        """The record; 404 ``file_not_found`` if there is none."""
        parsed = parse_file_ref(file_id) or file_id
        query = sa.select(files_table).where(files_table.c.id == parsed.lower())
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFoundError(f"file {file_id!r} not found", code="file_not_found")
        m = row._mapping
        created_at: datetime = m["created_at"]
        if created_at.tzinfo is None:  # SQLite keeps no zone: the value was written in UTC
            created_at = created_at.replace(tzinfo=timezone.utc)
        return FileRecord(
            id=m["id"],
            filename=m["filename"],
            content_type=m["content_type"],
            size=int(m["size"]),
            sha256=m["sha256"],
            created_at=created_at,
            api_key_id=m["api_key_id"],
        )

    async def open_stream(
        self, file: str | FileRecord, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Chunks of the content (bytes ``[start, end)``); the lookup happens before this returns."""
        record = file if isinstance(file, FileRecord) else await self.get(file)
        if await self.blobs.stat(record.sha256) is None:
            raise NotFoundError(f"content of file {record.id!r} is missing", code="file_content_missing")
        return self.blobs.open(record.sha256, start=start, end=end)

    async def read(self, file: str | FileRecord) -> bytes:
        return b"".join([chunk async for chunk in await self.open_stream(file)])

    def local_path(self, record: FileRecord) -> Path | None:
        """A read-only local path of the content, when the blob store has one."""
        return self.blobs.local_path(record.sha256)

    # ------------------------------------------------------------------ app values

    async def localize(self, value: Any, *, workdir: str | os.PathLike[str] | None = None) -> Any:
        """Make every :class:`File` in ``value`` readable here, in place; returns ``value``.

        ``runyard://`` references get ``path``, ``filename``, ``content_type`` and ``size``
        (unknown ids: 404 ``file_not_found``); ``data:`` inputs are stored first. ``path`` is the
        blob itself (read-only, no extension) unless ``workdir`` is given: then each file is
        linked (or copied) to ``workdir/<id>/<filename>``. Walks dicts, lists, tuples and
        pydantic models. Remote ``http(s)`` URLs are left as they are.
        """
        for f in _walk_files(value):
            if f.uri is None and f.data is not None:
                record = await self.put(f.data, f.filename, f.content_type)
                f.uri = record.uri
            file_id = parse_file_ref(f.uri)
            if file_id is None:
                continue
            record = await self.get(file_id)
            path = self.local_path(record)
            if path is None:  # a remote blob store: download it
                target_dir = Path(workdir) if workdir is not None else None
                path = await self._download(record, target_dir)
            elif workdir is not None:
                path = await asyncio.to_thread(_link_into, path, Path(workdir) / record.id, record.filename)
            f.uri = record.uri
            f.path = path
            f.filename = f.filename or record.filename
            f.content_type = f.content_type or record.content_type
            f.size = record.size
        return value

    async def _download(self, record: FileRecord, workdir: Path | None) -> Path:
        import tempfile

        base = workdir or Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="runyard-file-"))
        target = base / record.id / record.filename
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        fh = await asyncio.to_thread(open, target, "wb")
        try:
            async for chunk in await self.open_stream(record):
                await asyncio.to_thread(fh.write, chunk)
        finally:
            fh.close()
        return target

    async def store_outputs(self, value: Any, *, api_key_id: str | None = None) -> Any:
        """Store every :class:`File` in ``value`` that has no ``runyard://`` uri yet (made from a
        ``path`` or ``data``), in place, setting its ``uri``; returns ``value``.

        Afterwards ``pydantic`` JSON dumps render each File as its ``runyard://files/<id>``.
        """
        for f in _walk_files(value):
            if parse_file_ref(f.uri) is not None:
                continue
            if f.data is not None:
                record = await self.put(f.data, f.filename, f.content_type, api_key_id=api_key_id)
            elif f.path is not None:
                if not await asyncio.to_thread(f.path.is_file):
                    raise InvalidRequestError(f"output file {str(f.path)!r} does not exist", code="file_not_found")
                record = await self.put_path(f.path, f.filename, f.content_type)
            elif f.uri is not None and f.uri.startswith("data:"):
                decoded = parse_data_uri(f.uri)
                assert decoded is not None
                record = await self.put(decoded[0], f.filename, f.content_type or decoded[1], api_key_id=api_key_id)
            else:
                continue  # a remote URL stays a URL
            f.uri = record.uri
            f.filename = f.filename or record.filename
            f.content_type = f.content_type or record.content_type
            f.size = record.size
        return value


def _walk_files(value: Any, _seen: set[int] | None = None) -> list[File]:
    """Every :class:`File` inside dicts, lists, tuples, sets and pydantic models (each once)."""
    seen = _seen if _seen is not None else set()
    out: list[File] = []
    if id(value) in seen:
        return out
    if isinstance(value, File):
        seen.add(id(value))
        out.append(value)
    elif isinstance(value, dict):
        seen.add(id(value))
        for item in value.values():
            out.extend(_walk_files(item, seen))
    elif isinstance(value, list | tuple | set | frozenset):
        seen.add(id(value))
        for item in value:
            out.extend(_walk_files(item, seen))
    elif isinstance(value, BaseModel):
        seen.add(id(value))
        for name in type(value).model_fields:
            out.extend(_walk_files(getattr(value, name, None), seen))
    return out


def _link_into(blob: Path, directory: Path, filename: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename
    if target.exists():
        return target
    try:
        os.link(blob, target)
    except OSError:
        shutil.copyfile(blob, target)
    return target
