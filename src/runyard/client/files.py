"""``client.files``: upload and fetch files; :class:`FileOutput` for files in task outputs.

* ``client.files.upload(path | Path | bytes | file object, filename=None, content_type=None)``
  streams the file to ``POST /v1/files`` and returns an :class:`UploadedFile` (``.id``,
  ``.uri`` — ``runyard://files/<id>`` — and ``.access_url``). ``create`` is an alias.
* ``client.files.prepare_inputs(input)`` replaces local files in a run's input by references
  (auto-upload); ``client.files.wrap_outputs(output)`` turns file references in an output into
  :class:`FileOutput` objects, which download through the same client (HTTP or embedded).

Outputs' files (:class:`FileOutput`, :func:`wrap_outputs`) live in ``client/file_outputs.py``.
The async classes hold the logic; :class:`Files` drives :class:`AsyncFiles` through the
client's portal.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Union
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from runyard.client.file_outputs import FILES_PATH, FileOutput, wrap_outputs
from runyard.files import File, data_uri, parse_file_ref, sniff_content_type

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

CHUNK_SIZE = 1024 * 1024
DEFAULT_BASE64_MAX_BYTES = 1024 * 1024
MAX_PATH_LENGTH = 4096
FileEncodingStrategy = Literal["url", "base64"]
FileInput = Union[str, os.PathLike[str], bytes, bytearray, memoryview, IO[bytes], File]


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
