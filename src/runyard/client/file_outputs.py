"""Files in task outputs: :class:`FileOutput` (``str()`` is its URL; ``read``/``save`` download it
through the client that produced it) and :func:`wrap_outputs`, which finds file references in an
output and turns them into :class:`FileOutput` objects."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from runyard.files import file_uri, parse_file_ref

if TYPE_CHECKING:
    from runyard.client._base import AsyncAPIClient

__all__ = ["FILES_PATH", "FileOutput", "wrap_outputs"]

T = TypeVar("T")

FILES_PATH = "/v1/files"
_FILE_DICT_KEYS = frozenset(
    {"id", "object", "uri", "url", "access_url", "filename", "content_type", "size", "sha256", "created_at"}
)


# --------------------------------------------------------------------------- loop bridging


class _Home:
    """The event loop a client lives on, and how to run its coroutines from anywhere.

    ``await run(...)`` from the home loop runs directly, from another loop it hops over;
    ``block(...)`` waits from a thread that is not running the home loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop

    def _current(self) -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    async def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        current = self._current()
        home = self.loop
        if home is None:
            self.loop = current
            return await make()
        if home is current or not home.is_running():
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), home))

    def block(self, make: Callable[[], Coroutine[Any, Any, T]], what: str) -> T:
        home = self.loop
        current = self._current()
        if home is not None and home.is_running() and home is not current:
            return asyncio.run_coroutine_threadsafe(make(), home).result()
        raise RuntimeError(
            f"{what}() blocks and this client's event loop is the one running here; use `await {what}` "
            f"(async_{what.rsplit('.', 1)[-1]}) in async code"
        )


# --------------------------------------------------------------------------- FileOutput


_END: Any = object()  # the end of a FileOutput download (see FileOutput._cursor)


class FileOutput:
    """A file in a task's output: ``str()`` is its URL; ``read``/``save`` download it.

    ``read()`` / ``save(path)`` / ``for chunk in f`` block; in async code use
    ``await f.async_read()`` / ``await f.async_save(path)`` / ``async for chunk in f``.
    Downloads go through the client that produced it (HTTP or embedded, with its API key).
    """

    def __init__(
        self,
        client: AsyncAPIClient,
        file_id: str,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        size: int | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._client = client
        self.id = file_id
        self.filename = filename
        self.content_type = content_type
        self.size = size
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self._home = _Home(loop)

    @property
    def uri(self) -> str:
        return file_uri(self.id)

    @property
    def url(self) -> str:
        """The content URL on the client's server (requires the API key when auth is on)."""
        return f"{self._client.base_url}{FILES_PATH}/{self.id}/content"

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"FileOutput({self.uri!r}, filename={self.filename!r}, content_type={self.content_type!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileOutput) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # -- async ------------------------------------------------------------------
    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        response = await self._client.raw("GET", f"{FILES_PATH}/{self.id}/content")
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        finally:
            await response.aclose()

    async def _read(self) -> bytes:
        return b"".join([chunk async for chunk in self._chunks()])

    async def _save(self, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        fh = await asyncio.to_thread(open, partial, "wb")
        try:
            async for chunk in self._chunks():
                await asyncio.to_thread(fh.write, chunk)
        except BaseException:
            fh.close()
            await asyncio.to_thread(_unlink, partial)
            raise
        fh.close()
        await asyncio.to_thread(os.replace, partial, target)
        return target

    async def async_read(self) -> bytes:
        """The whole content."""
        return await self._home.run(self._read)

    async def async_save(self, path: str | os.PathLike[str]) -> Path:
        """Download to ``path`` (written whole, then renamed into place); returns the path."""
        return await self._home.run(lambda: self._save(path))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pull, close = self._cursor()
        try:
            while (chunk := await self._home.run(pull)) is not _END:
                yield chunk
        finally:
            await self._home.run(close)

    def _cursor(self) -> tuple[Callable[[], Coroutine[Any, Any, Any]], Callable[[], Coroutine[Any, Any, None]]]:
        """(next chunk or ``_END``, close) over one download, to be run on the client's loop."""
        chunks = self._chunks()

        async def pull() -> Any:
            try:
                return await chunks.__anext__()
            except StopAsyncIteration:
                return _END

        return pull, chunks.aclose

    # -- blocking -----------------------------------------------------------------
    def read(self) -> bytes:
        """The whole content (blocking)."""
        return self._home.block(self._read, "FileOutput.read")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Download to ``path`` (blocking); returns the path."""
        return self._home.block(lambda: self._save(path), "FileOutput.save")

    def __iter__(self) -> Iterator[bytes]:
        pull, close = self._cursor()
        try:
            while (chunk := self._home.block(pull, "FileOutput iteration")) is not _END:
                yield chunk
        finally:
            self._home.block(close, "FileOutput iteration")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def wrap_outputs(value: Any, client: AsyncAPIClient, *, loop: asyncio.AbstractEventLoop | None = None) -> Any:
    """A copy of a task output with stored-file references turned into :class:`FileOutput`.

    Recognised: ``runyard://files/<id>`` strings, this client's ``…/v1/files/<id>/content``
    URLs, and file objects (dicts with a ``uri`` like that and only file metadata keys).
    ``loop`` is the client's event loop (default: the running one).
    """

    def ref(item: Any) -> str | None:
        if not isinstance(item, str):
            return None
        if item.startswith("runyard://files/") or item.startswith(client.base_url + FILES_PATH + "/"):
            return parse_file_ref(item)
        return None

    def walk(item: Any) -> Any:
        file_id = ref(item)
        if file_id is not None:
            return FileOutput(client, file_id, loop=loop)
        if isinstance(item, dict):
            uri = item.get("uri")
            file_id = ref(uri)
            if file_id is not None and set(item) <= _FILE_DICT_KEYS:
                size = item.get("size")
                return FileOutput(
                    client,
                    file_id,
                    filename=item.get("filename"),
                    content_type=item.get("content_type"),
                    size=size if isinstance(size, int) else None,
                    loop=loop,
                )
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        return item

    return walk(value)
