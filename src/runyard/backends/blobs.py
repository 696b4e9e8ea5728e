"""Blob storage for uploaded files: content-addressed bytes behind a small async interface.

A blob's key is the SHA-256 of its content (lowercase hex), so the same bytes are stored once
whatever name they were uploaded under. :class:`LocalBlobStore` keeps them under a directory;
an S3-compatible store implements the same :class:`BlobStore` methods (stream to a staging
object, then copy it to ``<prefix>/<sha256>``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import PayloadTooLargeError

__all__ = ["DEFAULT_CHUNK_SIZE", "BlobInfo", "BlobStore", "BlobTooLargeError", "BlobWriter", "LocalBlobStore"]

DEFAULT_CHUNK_SIZE = 256 * 1024
_WRITE_BUFFER = 1024 * 1024  # bytes gathered before one (threaded) disk write
STALE_PART_S = 24 * 3600  # a partial upload untouched this long is removed at start
_KEY = re.compile(r"[0-9a-f]{64}")


class BlobTooLargeError(PayloadTooLargeError):
    """More bytes than the writer's ``max_bytes`` were written (413 ``file_too_large``)."""

    default_code = "file_too_large"


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str  # sha256 hex of the content
    size: int

    @property
    def sha256(self) -> str:
        return self.key


class BlobWriter(abc.ABC):
    """An upload in progress: ``write`` chunks, then ``commit`` (or ``abort``).

    The size limit is enforced while writing: the chunk that crosses ``max_bytes`` raises
    :class:`BlobTooLargeError` and the partial upload is discarded.
    """

    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        self.head = b""  # the first bytes, for content sniffing

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            await self.abort()
            raise BlobTooLargeError(f"file exceeds the upload limit of {self.max_bytes} bytes")
        if len(self.head) < 4096:
            self.head += chunk[: 4096 - len(self.head)]
        self._hash.update(chunk)
        await self._write(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @abc.abstractmethod
    async def _write(self, chunk: bytes) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> BlobInfo:
        """Make the blob durable under its content key (a no-op copy if it already exists)."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Discard what was written; safe to call more than once."""

    async def __aenter__(self) -> BlobWriter:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            await self.abort()


class BlobStore(abc.ABC):
    """Content-addressed blob storage. Keys are SHA-256 hex digests of the content."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Prepare the backing storage (create the directory, check the bucket...)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @abc.abstractmethod
    def writer(self, *, max_bytes: int | None = None) -> BlobWriter:
        """A new streaming upload."""

    async def put(self, data: bytes | AsyncIterable[bytes], *, max_bytes: int | None = None) -> BlobInfo:
        """Store ``data`` (bytes or an async iterator of chunks); returns its key and size."""
        async with self.writer(max_bytes=max_bytes) as w:
            if isinstance(data, bytes | bytearray | memoryview):
                await w.write(bytes(data))
            else:
                async for chunk in data:
                    await w.write(chunk)
            return await w.commit()

    @abc.abstractmethod
    async def stat(self, key: str) -> BlobInfo | None:
        """The blob's info, or ``None`` if it does not exist."""

    @abc.abstractmethod
    def open(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` of the blob as chunks (``FileNotFoundError`` if missing)."""

    async def read(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.open(key)])

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the blob; ``False`` if it did not exist."""

    def local_path(self, key: str) -> Path | None:
        """A path on this machine holding the blob's bytes (read-only), if the store has one."""
        return None


def _check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"invalid blob key {key!r}")
    return key


class _LocalWriter(BlobWriter):
    def __init__(self, store: LocalBlobStore, max_bytes: int | None) -> None:
        super().__init__(max_bytes)
        self._store = store
        self._tmp = store.tmp_dir / f"{uuid.uuid4().hex}.part"
        self._fh: IO[bytes] | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._done = False

    async def _write(self, chunk: bytes) -> None:
        if self._done:
            raise RuntimeError("blob writer is closed")
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= _WRITE_BUFFER:
            await self._flush()

    async def _flush(self) -> None:
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        await asyncio.to_thread(self._append, data)

    def _append(self, data: bytes) -> None:
        if self._fh is None:
            self._fh = open(self._tmp, "xb")
        if data:
            self._fh.write(data)

    def _finish(self) -> BlobInfo:
        fh = self._fh
        if fh is None:
            fh = self._fh = open(self._tmp, "xb")
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        key = self.sha256
        final = self._store.path_for(key)
        if final.exists():
            self._tmp.unlink()  # same content already stored
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self._tmp, 0o444)
            os.replace(self._tmp, final)  # atomic: readers see the whole blob or none
        return BlobInfo(key, self.size)

    async def commit(self) -> BlobInfo:
        if self._done:
            raise RuntimeError("blob writer is closed")
        if self._buffer:
            await self._flush()
        try:
            info = await asyncio.to_thread(self._finish)
        except BaseException:
            await self.abort()
            raise
        self._done = True
        return info

    def _discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer.clear()
        await asyncio.to_thread(self._discard)


class LocalBlobStore(BlobStore):
    """Blobs as files ``<root>/<ab>/<cd>/<sha256>``; uploads go to ``<root>/tmp`` then are renamed."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.tmp_dir = self.root / "tmp"

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # uploads cut off by a crash; recent ones may belong to another process sharing the directory
        cutoff = time.time() - STALE_PART_S
        for part in self.tmp_dir.glob("*.part"):
            with contextlib.suppress(OSError):
                if part.stat().st_mtime < cutoff:
                    part.unlink()

    def path_for(self, key: str) -> Path:
        _check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def writer(self, *, max_bytes: int | None = None) -> BlobWriter:
        return _LocalWriter(self, max_bytes)

    async def stat(self, key: str) -> BlobInfo | None:
        try:
            st = await asyncio.to_thread(os.stat, self.path_for(key))
        except FileNotFoundError:
            return None
        return BlobInfo(key, st.st_size)

    async def open(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        fh = await asyncio.to_thread(open, path, "rb")
        try:
            if start:
                fh.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                size = chunk_size if remaining is None else min(chunk_size, remaining)
                chunk = await asyncio.to_thread(fh.read, size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            fh.close()

    async def delete(self, key: str) -> bool:
        def unlink() -> bool:
            try:
                self.path_for(key).unlink()
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(unlink)

    def local_path(self, key: str) -> Path | None:
        path = self.path_for(key)
        return path if path.is_file() else None
