"""``client.files``: upload and fetch files; :class:`FileOutput` for files in task outputs.

* ``client.files.upload(path | Path | bytes | file object, filename=None, content_type=None)``
  streams the file to ``POST /v1/files`` and returns an :class:`UploadedFile` (``.id``,
  ``.uri`` — ``runyard://files/<id>`` — and ``.access_url``). ``create`` is an alias.
* ``client.files.prepare_inputs(input)`` replaces local files in a run's input by references
  (auto-upload); ``client.files.wrap_outputs(output)`` turns file references in an output into
  :class:`FileOutput` objects, which download through the same client (HTTP or embedded).

The async classes hold the logic; :class:`Files` drives :class:`AsyncFiles` through the
client's portal.
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, Union
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from runyard.files import File, data_uri, file_uri, parse_file_ref, sniff_content_type

if TYPE_CHECKING:
    from runyard.client._base import AsyncAPIClient
    from runyard.client._sync import Portal

__all__ = [
    "DEFAULT_BASE64_MAX_BYTES",
    "AsyncFiles",
    "FileEncodingStrategy",
    "FileOutput",
    "Files",
    "UploadedFile",
    "prepare_inputs",
    "wrap_outputs",
]

T = TypeVar("T")

FILES_PATH = "/v1/files"
CHUNK_SIZE = 1024 * 1024
DEFAULT_BASE64_MAX_BYTES = 1024 * 1024
MAX_PATH_LENGTH = 4096
FileEncodingStrategy = Literal["url", "base64"]
FileInput = Union[str, os.PathLike[str], bytes, bytearray, memoryview, IO[bytes], File]
_FILE_DICT_KEYS = frozenset(
    {"id", "object", "uri", "url", "access_url", "filename", "content_type", "size", "sha256", "created_at"}
)


class UploadedFile(BaseModel):
    """A stored file, as ``POST /v1/files`` and ``GET /v1/files/{id}`` describe it."""

    model_config = ConfigDict(extra="allow")

    id: str
    uri: str
    filename: str
    content_type: str
    size: int
    sha256: str | None = None
    created_at: str | None = None
    access_url: str | None = None
    object: str = "file"

    @property
    def url(self) -> str | None:
        return self.access_url

    def __str__(self) -> str:
        return self.uri


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


# --------------------------------------------------------------------------- uploads


class _Body:
    """What to send for one upload: content, name, length, and whether it can be re-sent."""

    def __init__(self, content: Any, name: str | None, length: int | None, replayable: bool) -> None:
        self.content = content
        self.name = name
        self.length = length
        self.replayable = replayable


async def _read_chunks(fh: IO[bytes], close: bool) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await asyncio.to_thread(fh.read, CHUNK_SIZE)
            if not chunk:
                break
            if not isinstance(chunk, bytes | bytearray):
                raise TypeError("file objects must be opened in binary mode ('rb')")
            yield bytes(chunk)
    finally:
        if close:
            await asyncio.to_thread(fh.close)


async def _body_for(file: Any) -> _Body:
    if isinstance(file, File):
        if file.data is not None:
            return _Body(file.data, file.filename, len(file.data), True)
        if file.path is not None:
            return await _body_for(file.path)
        raise ValueError(f"{file!r} has neither data nor a path to upload")
    if isinstance(file, bytes | bytearray | memoryview):
        data = bytes(file)
        return _Body(data, None, len(data), True)
    if isinstance(file, str | os.PathLike):
        path = Path(file)
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"no such file: {str(path)!r}") from None
        fh = await asyncio.to_thread(open, path, "rb")
        return _Body(_read_chunks(fh, close=True), path.name, size, False)
    if hasattr(file, "read"):
        name = getattr(file, "name", None)
        length = None
        try:
            if file.seekable():
                here = file.tell()
                length = file.seek(0, io.SEEK_END) - here
                file.seek(here)
        except (AttributeError, OSError, ValueError):
            length = None
        return _Body(
            _read_chunks(file, close=False), os.path.basename(name) if isinstance(name, str) else None, length, False
        )
    raise TypeError(f"cannot upload a {type(file).__name__}: pass a path, bytes or a binary file object")


async def _read_all(file: Any) -> tuple[bytes, str | None]:
    body = await _body_for(file)
    if isinstance(body.content, bytes):
        return body.content, body.name
    return b"".join([chunk async for chunk in body.content]), body.name


def _looks_like_local_file(value: str) -> bool:
    if not value or len(value) > MAX_PATH_LENGTH or "\n" in value or "\x00" in value:
        return False
    if "://" in value or value.startswith("data:"):
        return False
    try:
        return os.path.isfile(value)
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- helpers


async def prepare_inputs(
    value: Any,
    client: AsyncAPIClient,
    *,
    auto_upload: bool = True,
    file_encoding_strategy: FileEncodingStrategy = "url",
    base64_max_bytes: int = DEFAULT_BASE64_MAX_BYTES,
) -> Any:
    """A copy of a run's input with local files replaced by references.

    Walks dicts, lists and tuples. Uploaded (``"url"``, the default) and replaced by its
    ``runyard://files/<id>``: every :class:`~pathlib.Path`, binary file object, ``bytes``,
    :class:`runyard.File` with data or a path, and — unless ``auto_upload=False`` — every
    string that is the path of an existing local file. With ``"base64"`` a file of at most
    ``base64_max_bytes`` is inlined as a ``data:`` URI instead (larger ones are uploaded).
    :class:`FileOutput` and :class:`UploadedFile` values become their ``uri``.
    """
    if file_encoding_strategy not in ("url", "base64"):
        raise ValueError("file_encoding_strategy must be 'url' or 'base64'")
    uploads: dict[str, str] = {}

    async def encode(file: Any) -> str:
        key = os.fspath(file) if isinstance(file, str | os.PathLike) else None
        if key is not None and key in uploads:
            return uploads[key]
        if file_encoding_strategy == "base64":
            size = await _size_of(file)
            if size is not None and size <= base64_max_bytes:
                data, name = await _read_all(file)
                declared = file.content_type if isinstance(file, File) else None
                ref = data_uri(data, declared or sniff_content_type(data[:4096], name))
                if key is not None:
                    uploads[key] = ref
                return ref
        uploaded = await AsyncFiles(client).upload(file)
        if key is not None:
            uploads[key] = uploaded.uri
        return uploaded.uri

    async def walk(item: Any) -> Any:
        if isinstance(item, FileOutput | UploadedFile):
            return item.uri
        if isinstance(item, File):
            return item.uri if item.uri is not None else await encode(item)
        if isinstance(item, os.PathLike | bytes | bytearray | memoryview):
            return await encode(item)
        if isinstance(item, str):
            if auto_upload and _looks_like_local_file(item):
                return await encode(item)
            return item
        if isinstance(item, dict):
            return {k: await walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [await walk(v) for v in item]
        if hasattr(item, "read") and callable(item.read):
            return await encode(item)
        return item

    return await walk(value)


async def _size_of(file: Any) -> int | None:
    if isinstance(file, File):
        if file.data is not None:
            return len(file.data)
        file = file.path
    if isinstance(file, bytes | bytearray | memoryview):
        return len(file)
    if isinstance(file, str | os.PathLike):
        return (await asyncio.to_thread(os.stat, file)).st_size
    try:
        if file.seekable():
            here = file.tell()
            end = int(file.seek(0, io.SEEK_END))
            file.seek(here)
            return end - here
    except (AttributeError, OSError, ValueError):
        pass
    return None


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


# --------------------------------------------------------------------------- resources


class AsyncFiles:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def upload(
        self, file: FileInput, *, filename: str | None = None, content_type: str | None = None
    ) -> UploadedFile:
        """Upload a path, ``Path``, ``bytes`` or binary file object (streamed; ``POST /v1/files``).

        The server sniffs the type when ``content_type`` is not given and sanitises the name.
        """
        body = await _body_for(file)
        name = filename or body.name
        if content_type is None and isinstance(file, File):
            content_type = file.content_type
        headers = {"Content-Type": content_type or "application/octet-stream"}
        if name:
            headers["X-Filename"] = quote(name, safe="")
        if body.length is not None:
            headers["Content-Length"] = str(body.length)
        data = await self._client.request(
            "POST",
            FILES_PATH,
            content=body.content,
            headers=headers,
            idempotent_post=False,
            max_retries=None if body.replayable else 0,
        )
        return UploadedFile.model_validate(data)

    create = upload  # the SpeedPix name

    async def get(self, file_id: str) -> UploadedFile:
        """A file's metadata (``GET /v1/files/{id}``); accepts an id or a ``runyard://`` uri."""
        fid = parse_file_ref(file_id) or file_id
        data = await self._client.request("GET", f"{FILES_PATH}/{quote(fid, safe='')}")
        return UploadedFile.model_validate(data)

    async def read(self, file_id: str) -> bytes:
        """A file's content."""
        return await self.output(file_id).async_read()

    def output(self, file_id: str) -> FileOutput:
        """A :class:`FileOutput` for a stored file (id or ``runyard://`` uri)."""
        fid = parse_file_ref(file_id) or file_id
        return FileOutput(self._client, fid)

    async def prepare_inputs(
        self,
        value: Any,
        *,
        auto_upload: bool = True,
        file_encoding_strategy: FileEncodingStrategy = "url",
        base64_max_bytes: int = DEFAULT_BASE64_MAX_BYTES,
    ) -> Any:
        """See :func:`prepare_inputs`."""
        return await prepare_inputs(
            value,
            self._client,
            auto_upload=auto_upload,
            file_encoding_strategy=file_encoding_strategy,
            base64_max_bytes=base64_max_bytes,
        )

    def wrap_outputs(self, value: Any) -> Any:
        """See :func:`wrap_outputs` (bound to the running loop, the client's)."""
        return wrap_outputs(value, self._client)


class Files:
    """Blocking twin of :class:`AsyncFiles`."""

    def __init__(self, inner: AsyncFiles, portal: Portal) -> None:
        self._async = inner
        self._portal = portal

    def upload(self, file: FileInput, *, filename: str | None = None, content_type: str | None = None) -> UploadedFile:
        """See :meth:`AsyncFiles.upload`."""
        return self._portal.call(self._async.upload(file, filename=filename, content_type=content_type))

    create = upload

    def get(self, file_id: str) -> UploadedFile:
        """See :meth:`AsyncFiles.get`."""
        return self._portal.call(self._async.get(file_id))

    def read(self, file_id: str) -> bytes:
        """See :meth:`AsyncFiles.read`."""
        return self.output(file_id).read()

    def output(self, file_id: str) -> FileOutput:
        """See :meth:`AsyncFiles.output`."""
        fid = parse_file_ref(file_id) or file_id
        return FileOutput(self._async._client, fid, loop=self._portal.loop)

    def prepare_inputs(
        self,
        value: Any,
        *,
        auto_upload: bool = True,
        file_encoding_strategy: FileEncodingStrategy = "url",
        base64_max_bytes: int = DEFAULT_BASE64_MAX_BYTES,
    ) -> Any:
        """See :func:`prepare_inputs`."""
        return self._portal.call(
            self._async.prepare_inputs(
                value,
                auto_upload=auto_upload,
                file_encoding_strategy=file_encoding_strategy,
                base64_max_bytes=base64_max_bytes,
            )
        )

    def wrap_outputs(self, value: Any) -> Any:
        """See :func:`wrap_outputs`."""
        return wrap_outputs(value, self._async._client, loop=self._portal.loop)
