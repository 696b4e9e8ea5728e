"""Files in app inputs and outputs: the :class:`File` type and the helpers both sides share.

A file travels in JSON as a string: ``runyard://files/<id>`` (stored by the gateway), an
``http(s)://`` URL, or a ``data:<type>;base64,...`` URI. In an app signature, annotate it
as :class:`File`::

    @runyard.app("acme/upscale", version="1.0.0")
    def upscale(image: runyard.File, scale: int = 2) -> runyard.File:
        data = image.read_bytes()             # or open(image.path, "rb")
        return runyard.File(data=..., filename="out.png")   # or File(path="/tmp/out.png")

Its JSON Schema is ``{"type": "string", "format": "uri", "x-runyard-file": true}``;
:func:`is_file_schema` recognises it. Strings from JSON are only ever URIs: a local path
is accepted from Python (``File(path=...)``, a :class:`~pathlib.Path`), never from a request.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
import re
import unicodedata
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from pydantic_core import core_schema

__all__ = [
    "FILE_SCHEMA_MARKER",
    "FILE_URI_PREFIX",
    "File",
    "data_uri",
    "file_uri",
    "is_file_schema",
    "is_generic_content_type",
    "parse_data_uri",
    "parse_file_ref",
    "sanitize_filename",
    "sniff_content_type",
]

FILE_URI_PREFIX = "runyard://files/"
FILE_SCHEMA_MARKER = "x-runyard-file"
DEFAULT_FILENAME = "file"
GENERIC_CONTENT_TYPES = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/unknown", "application/x-unknown"}
)
MAX_FILENAME_BYTES = 255

_ID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_REF = re.compile(rf"runyard://files/({_ID})")
_ACCESS_PATH = re.compile(rf"(?:.*/)?v1/files/({_ID})(?:/content)?/?")
_DATA_URI = re.compile(r"data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*?)(?P<b64>;base64)?,(?P<data>.*)", re.DOTALL)
_CONTENT_TYPE = re.compile(r"[a-zA-Z0-9][\w.+-]*/[a-zA-Z0-9][\w.+-]*(\s*;\s*[\w.+-]+=[\w.+\-\"]+)*")


# --------------------------------------------------------------------------- references


def file_uri(file_id: str) -> str:
    """``runyard://files/<id>``."""
    return FILE_URI_PREFIX + file_id


def parse_file_ref(value: Any) -> str | None:
    """The file id in a reference to a stored file, else ``None``.

    Accepts ``runyard://files/<id>`` and the gateway's own URLs for a file
    (``http(s)://host/v1/files/<id>`` or ``.../v1/files/<id>/content``, as ``access_url`` gives).
    """
    if not isinstance(value, str) or len(value) > 2048:
        return None
    m = _REF.fullmatch(value)
    if m:
        return m.group(1).lower()
    if value.startswith(("http://", "https://")):
        try:
            parts = urlsplit(value)
        except ValueError:
            return None
        m = _ACCESS_PATH.fullmatch(parts.path)
        if m:
            return m.group(1).lower()
    return None


def data_uri(data: bytes, content_type: str | None = None) -> str:
    """``data:<type>;base64,<data>``."""
    return f"data:{content_type or 'application/octet-stream'};base64,{base64.b64encode(data).decode('ascii')}"


def parse_data_uri(value: Any) -> tuple[bytes, str | None] | None:
    """``(bytes, content type)`` from a ``data:`` URI, ``None`` if ``value`` is not one.

    Raises ``ValueError`` for a ``data:`` URI whose payload does not decode.
    """
    if not isinstance(value, str) or not value.startswith("data:"):
        return None
    m = _DATA_URI.fullmatch(value)
    if m is None:
        raise ValueError("malformed data: URI")
    content_type = m.group("type").strip().lower() or None
    payload = m.group("data")
    if m.group("b64"):
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("data: URI has invalid base64") from None
    else:
        data = unquote(payload).encode("utf-8")
    return data, content_type


# --------------------------------------------------------------------------- names & types


def sanitize_filename(name: Any, default: str = DEFAULT_FILENAME) -> str:
    """A safe basename: directories, ``..``, drive letters, NULs and control characters removed.

    ``"../../etc/passwd"`` → ``"passwd"``, ``"C:\\\\x\\\\a.png"`` → ``"a.png"``, ``".."`` → ``default``.
    The result never contains ``/`` or ``\\``, never starts with a dot and is at most 255 bytes.
    """
    if not isinstance(name, str):
        return default
    name = unicodedata.normalize("NFC", name)
    # control, format (bidi overrides...), surrogate, private-use and unassigned characters go
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r'[<>:"|?*]', "_", name)
    name = name.strip().lstrip(".").strip()
    name = name.rstrip(". ")  # Windows drops these anyway
    if not name:
        return default
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if not dot or len(ext) > 16:
            stem, ext = name, ""
        room = MAX_FILENAME_BYTES - len(ext.encode("utf-8")) - (1 if ext else 0)
        stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
        name = f"{stem}.{ext}" if ext else stem
    return name


def is_generic_content_type(content_type: str | None) -> bool:
    """True for missing or uninformative types (``application/octet-stream`` and friends)."""
    if not content_type:
        return True
    return content_type.split(";", 1)[0].strip().lower() in GENERIC_CONTENT_TYPES


def clean_content_type(content_type: str | None) -> str | None:
    """A well-formed ``type/subtype[; params]`` (lowercased type), or ``None``."""
    if not content_type:
        return None
    value = content_type.strip()
    if len(value) > 255 or not _CONTENT_TYPE.fullmatch(value):
        return None
    kind, sep, params = value.partition(";")
    return kind.strip().lower() + (sep + params if sep else "")


_MAGIC: list[tuple[int, bytes, str]] = [
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"BM", "image/bmp"),
    (0, b"\x00\x00\x01\x00", "image/x-icon"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"\x7fELF", "application/x-executable"),
]


def sniff_content_type(head: bytes, filename: str | None = None) -> str:
    """The content type from the first bytes (magic numbers), else the file name's extension,
    else ``application/json`` / ``text/plain`` for UTF-8 text, else ``application/octet-stream``."""
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if head[:4] == b"RIFF" and len(head) >= 12:
        riff = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(head[8:12])
        if riff:
            return riff
    if head[4:8] == b"ftyp" and len(head) >= 12:
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"mif1"):
            return "image/heic"
        if brand == b"qt  ":
            return "video/quicktime"
        if brand.startswith(b"M4A"):
            return "audio/mp4"
        return "video/mp4"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "audio/mpeg"  # an MPEG audio frame sync without an ID3 tag
    if filename:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        if guessed and not is_generic_content_type(guessed):
            return guessed
    text = _as_text(head)
    if text is not None:
        stripped = text.lstrip("\ufeff \t\r\n")
        if stripped[:1] in ("{", "["):
            return "application/json"
        lowered = stripped[:64].lower()
        if lowered.startswith(("<svg", "<?xml")) and "<svg" in text[:1024].lower():
            return "image/svg+xml"
        if lowered.startswith(("<!doctype html", "<html")):
            return "text/html"
        return "text/plain"
    return "application/octet-stream"


def _as_text(head: bytes) -> str | None:
    if not head or b"\x00" in head:
        return None if head else ""
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            return head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def extension_for(content_type: str) -> str:
    """``.png`` for ``image/png``; ``""`` when unknown."""
    kind = content_type.split(";", 1)[0].strip()
    special = {"image/jpeg": ".jpg", "audio/mpeg": ".mp3", "text/plain": ".txt", "audio/wav": ".wav"}
    return special.get(kind) or mimetypes.guess_extension(kind, strict=False) or ""


# --------------------------------------------------------------------------- File


class File:
    """A file given to or returned by an app.

    Exactly what it holds depends on where it came from:

    * an input: ``uri`` (``runyard://files/<id>``), and — once the worker has localised it —
      ``path`` (a local, read-only copy), ``filename``, ``content_type`` and ``size``;
    * an output the app made: ``path`` or ``data``; the worker stores it and sets ``uri``.

    In JSON it is its ``uri`` string; in a JSON Schema ``{"type": "string", "format": "uri",
    "x-runyard-file": true}``.
    """

    __slots__ = ("content_type", "data", "filename", "path", "size", "uri")

    def __init__(
        self,
        uri: str | os.PathLike[str] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        data: bytes | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        size: int | None = None,
    ) -> None:
        if isinstance(uri, os.PathLike):
            path, uri = uri, None
        self.uri: str | None = uri
        self.path: Path | None = Path(path) if path is not None else None
        self.data: bytes | None = bytes(data) if data is not None else None
        if filename is None and self.path is not None:
            filename = self.path.name
        self.filename: str | None = filename
        self.content_type: str | None = content_type
        if size is None and self.data is not None:
            size = len(self.data)
        self.size: int | None = size
        if uri is None and path is None and data is None:
            raise ValueError("File needs a uri, a path or data")

    # -- access ---------------------------------------------------------------
    @property
    def id(self) -> str | None:
        """The stored file's id when ``uri`` refers to one."""
        return parse_file_ref(self.uri)

    @property
    def is_local(self) -> bool:
        """Its bytes can be read here (``data`` or an existing ``path``)."""
        return self.data is not None or (self.path is not None and self.path.is_file())

    def read_bytes(self) -> bytes:
        """The content; inputs are readable once the worker has localised them."""
        if self.data is not None:
            return self.data
        if self.path is not None:
            return self.path.read_bytes()
        if self.uri is not None:
            decoded = parse_data_uri(self.uri)
            if decoded is not None:
                return decoded[0]
        raise RuntimeError(f"{self!r} is not available locally (runyard localises file inputs before run())")

    def open(self) -> IO[bytes]:
        """A binary file object over the content."""
        if self.path is not None and self.data is None:
            return open(self.path, "rb")
        import io

        return io.BytesIO(self.read_bytes())

    # -- conversions ------------------------------------------------------------
    @classmethod
    def coerce(cls, value: Any) -> File:
        """A File from a URI string, a file dict (``{"uri": ...}``), a Path, bytes or a File.

        A plain string must be a ``runyard://``, ``http(s)://`` or ``data:`` URI; local paths
        are only accepted as :class:`~pathlib.Path` (so request JSON can never name one).
        """
        if isinstance(value, File):
            return value
        if isinstance(value, os.PathLike):
            return cls(path=value)
        if isinstance(value, bytes | bytearray | memoryview):
            return cls(data=bytes(value))
        if isinstance(value, str):
            return cls._from_uri(value)
        if isinstance(value, dict):
            uri = value.get("uri") or value.get("url") or value.get("access_url")
            if not isinstance(uri, str):
                raise ValueError("a file object needs a 'uri'")
            f = cls._from_uri(uri)
            if isinstance(value.get("filename"), str):
                f.filename = value["filename"]
            if isinstance(value.get("content_type"), str) and f.content_type is None:
                f.content_type = value["content_type"]
            if isinstance(value.get("size"), int):
                f.size = value["size"]
            return f
        raise ValueError(f"expected a file reference, got {type(value).__name__}")

    @classmethod
    def _from_uri(cls, value: str) -> File:
        file_id = parse_file_ref(value)
        if file_id is not None:
            return cls(file_uri(file_id))
        if value.startswith("data:"):
            decoded = parse_data_uri(value)
            assert decoded is not None
            data, content_type = decoded
            return cls(data=data, content_type=content_type)
        if value.startswith(("http://", "https://")) and len(value) <= 8192:
            return cls(value)
        raise ValueError("a file must be a runyard://files/<id> reference, an http(s) URL or a data: URI")

    def to_json(self) -> str:
        """The ``uri``; a file not stored yet (path/data only) cannot be serialised."""
        if self.uri is None:
            raise ValueError(f"{self!r} has not been stored yet; it has no uri")
        return self.uri

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.coerce,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda f: f.to_json() if isinstance(f, File) else f, when_used="json"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, _schema: Any, _handler: Any) -> dict[str, Any]:
        return {
            "type": "string",
            "format": "uri",
            FILE_SCHEMA_MARKER: True,
            "description": "a file: runyard://files/<id>, an http(s) URL or a data: URI",
        }

    def __repr__(self) -> str:
        where = self.uri if self.uri and not self.uri.startswith("data:") else self.path or "<bytes>"
        return f"File({str(where)!r}, filename={self.filename!r}, content_type={self.content_type!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, File):
            return NotImplemented
        return (self.uri, self.path, self.data) == (other.uri, other.path, other.data)

    def __hash__(self) -> int:
        return hash((self.uri, self.path))


def is_file_schema(schema: Any) -> bool:
    """True for the JSON Schema of a :class:`File` field."""
    return isinstance(schema, dict) and schema.get(FILE_SCHEMA_MARKER) is True
