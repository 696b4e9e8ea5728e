"""Files: uploads stored content-addressed in a :class:`BlobStore`, metadata in the ``files`` table.

Every file has an id (a UUIDv7) and the URI ``runyard://files/<id>``; the same bytes uploaded
twice are two records over one blob. Names are sanitised, types sniffed when not given, and
the size limit (``[files] max_upload_bytes``) is enforced while the bytes stream in.
"""

from __future__ import annotations

import asyncio
import os
import reprlib
import shutil
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import sqlalchemy as sa
from pydantic import BaseModel

from ..backends.blobs import BlobStore, BlobWriter, LocalBlobStore
from ..backends.schema import files as files_table
from ..backends.store import Store, new_id, utcnow
from ..config import FilesConfig
from ..errors import ConflictError, InvalidRequestError, NotFoundError, ValidationError
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
from .urlguard import Resolver, check_url, guarded_transport

__all__ = ["FileRecord", "FileService"]

_PATH_CHUNK = 1024 * 1024
FETCH_TIMEOUT_S = 30.0  # per connect / read of a file fetched by URL
FETCH_DEADLINE_S = 120.0  # the whole fetch
MAX_REDIRECTS = 5


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
    def __init__(
        self, store: Store, blobs: BlobStore, config: FilesConfig, *, resolver: Resolver | None = None
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.config = config
        self.resolver = resolver  # how URL inputs' hosts are looked up (None: the system's)

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
        file_id: str | None = None,
    ) -> FileRecord:
        """Finish a :meth:`writer` upload and record it (under ``file_id`` when the caller
        reserved one; a taken id is 409 ``file_exists``)."""
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
            id=file_id or str(new_id()),
            filename=name,
            content_type=kind,
            size=info.size,
            sha256=info.key,
            created_at=utcnow(),
            api_key_id=api_key_id,
        )
        async with self.store.engine.begin() as conn:
            taken = sa.select(files_table.c.id).where(files_table.c.id == file_id)
            if file_id is not None and (await conn.execute(taken)).first():
                raise ConflictError(f"file {file_id} already exists", code="file_exists")
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
        file_id: str | None = None,
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
        return await self.commit(writer, filename, content_type, api_key_id=api_key_id, file_id=file_id)

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

    # ------------------------------------------------------------------ ingesting inputs

    async def ingest(self, value: Any, *, api_key_id: str | None = None, allow_private: bool = False) -> FileRecord:
        """Store (or look up) one file input given in any accepted form; the stored record.

        Accepted: a ``runyard://files/<id>`` ref or this gateway's file URL, or a dict with such a
        ``uri`` / an ``id`` (unknown: 404 ``file_not_found``); a ``data:`` URI; Sim's
        ``{"type": "file" | "url", "data": ..., "name", "mime"}``; an ``http(s)`` URL, fetched here
        through the URL guard (``allow_private`` lets it reach private addresses); a
        :class:`File` with a uri or data. Too large: 413 ``file_too_large``; anything else:
        422 ``invalid_input``.
        """
        if isinstance(value, File):
            if value.uri is not None:
                return await self.ingest(value.uri, api_key_id=api_key_id, allow_private=allow_private)
            if value.data is not None:
                return await self.put(value.data, value.filename, value.content_type, api_key_id=api_key_id)
        elif isinstance(value, dict):
            return await self._ingest_dict(value, api_key_id=api_key_id, allow_private=allow_private)
        elif isinstance(value, str):
            return await self._ingest_str(value, None, None, api_key_id=api_key_id, allow_private=allow_private)
        raise ValidationError(f"not a file: {_describe(value)}", code="invalid_input")

    async def _ingest_dict(self, value: dict[str, Any], *, api_key_id: str | None, allow_private: bool) -> FileRecord:
        kind = value.get("type")
        if kind in ("file", "url") and isinstance(value.get("data"), str):  # Sim's file objects
            name, mime = value.get("name"), value.get("mime")
            return await self._ingest_str(
                value["data"],
                name if isinstance(name, str) else None,
                mime if isinstance(mime, str) else None,
                api_key_id=api_key_id,
                allow_private=allow_private,
            )
        ref = value.get("uri")
        if isinstance(ref, str) and parse_file_ref(ref) is not None:
            return await self.get(ref)
        if kind is None and isinstance(value.get("id"), str) and value["id"]:
            return await self.get(value["id"])
        raise ValidationError(f"not a file: {_describe(value)}", code="invalid_input")

    async def _ingest_str(
        self,
        value: str,
        filename: str | None,
        content_type: str | None,
        *,
        api_key_id: str | None,
        allow_private: bool,
    ) -> FileRecord:
        if parse_file_ref(value) is not None:
            return await self.get(value)
        if value.startswith("data:"):
            try:
                decoded = parse_data_uri(value)
            except ValueError as err:
                raise ValidationError(f"bad data: URI: {err}", code="invalid_input") from None
            assert decoded is not None
            return await self.put(decoded[0], filename, content_type or decoded[1], api_key_id=api_key_id)
        if value.startswith(("http://", "https://")):
            return await self.fetch(value, filename, content_type, api_key_id=api_key_id, allow_private=allow_private)
        raise ValidationError(f"not a file: {_describe(value)}", code="invalid_input")

    async def fetch(
        self,
        url: str,
        filename: str | None = None,
        content_type: str | None = None,
        *,
        api_key_id: str | None = None,
        allow_private: bool = False,
    ) -> FileRecord:
        """Download ``url`` (each hop through the URL guard) and store it, streamed and capped at
        ``max_upload_bytes``; the type comes from the response, the name from the URL path."""
        import httpx  # on first use: 7 MB a gateway that fetches no URL never loads

        try:
            return await asyncio.wait_for(
                self._fetch(url, filename, content_type, api_key_id, allow_private), FETCH_DEADLINE_S
            )
        except (httpx.HTTPError, asyncio.TimeoutError) as err:
            reason = str(err) or type(err).__name__
            raise ValidationError(f"cannot fetch {url}: {reason}", code="file_fetch_failed") from None

    async def _fetch(
        self, url: str, filename: str | None, content_type: str | None, api_key_id: str | None, allow_private: bool
    ) -> FileRecord:
        import httpx

        transport = guarded_transport(allow_private=allow_private, resolver=self.resolver)
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, transport=transport) as client:
            for _ in range(MAX_REDIRECTS + 1):  # each hop: checked, and connected to the checked address
                await check_url(url, allow_private=allow_private, field="file url", resolver=self.resolver)
                async with client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code >= 400:
                        raise ValidationError(
                            f"fetching {url} answered {response.status_code}", code="file_fetch_failed"
                        )
                    declared = response.headers.get("content-type")
                    kind = None if is_generic_content_type(clean_content_type(declared)) else declared
                    name = filename or _name_from_url(url)
                    return await self.put(response.aiter_bytes(), name, kind or content_type, api_key_id=api_key_id)
        raise ValidationError(f"fetching {url}: too many redirects", code="file_fetch_failed")

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


def _name_from_url(url: str) -> str | None:
    """The last segment of the URL's path (``https://x/a/cat.png?s=1`` → ``cat.png``)."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    return name or None


def _describe(value: Any) -> str:
    return f"a {type(value).__name__} ({reprlib.repr(value)})"


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
