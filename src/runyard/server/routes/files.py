"""``/v1/files``: upload (multipart or raw body, streamed), metadata, and content download.

Upload either as ``multipart/form-data`` (field ``file``; optional fields ``filename`` and
``content_type``) or as the raw body (``Content-Type`` is the file's type, the name comes from
``X-Filename`` — percent-encoded for non-ASCII — or ``?filename=``). The bytes stream into the
blob store; ``[files] max_upload_bytes`` is enforced as they arrive (413 ``file_too_large``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...backends.blobs import BlobTooLargeError, BlobWriter
from ...errors import InvalidRequestError, NotFoundError, error_for_status
from ...files import parse_file_ref
from ...services.files import FileRecord, FileService
from ..access import check_file
from ..downloads import file_response
from ..http import gateway, json_response
from ..openapi import ANY_OBJECT, BINARY, Operation, Param

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024  # non-file form fields
FORM_OVERHEAD = 1024 * 1024  # boundaries, part headers and small fields on top of the file


def _too_large(limit: int) -> BlobTooLargeError:
    return BlobTooLargeError(f"file exceeds the upload limit of {limit} bytes")


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


async def upload(request: Request) -> Response:
    files = gateway(request).files
    key_id = getattr(request.state, "api_key_id", None)
    media_type = request.headers.get("content-type", "")
    if media_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        record, _fields = await upload_multipart(request, files, key_id)
    else:
        record = await _upload_raw(request, files, key_id)
    return json_response(describe(request, record), status=201)


async def _upload_raw(request: Request, files: FileService, key_id: str | None) -> FileRecord:
    limit = files.max_upload_bytes
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    header_name = request.headers.get("x-filename")
    filename = unquote(header_name) if header_name else request.query_params.get("filename")
    content_type = request.query_params.get("content_type") or request.headers.get("content-type")
    writer = files.writer()
    try:
        async for chunk in request.stream():
            await writer.write(chunk)
    except BaseException:
        await writer.abort()
        raise
    return await files.commit(writer, filename, content_type, api_key_id=key_id)


class _Part:
    def __init__(self) -> None:
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.filename: str | None = None
        self.content_type: str | None = None
        self.is_file = False
        self.value = bytearray()


async def upload_multipart(
    request: Request, files: FileService, key_id: str | None
) -> tuple[FileRecord, dict[str, str]]:
    """The stored file and the form's other fields (OpenAI's upload sends ``purpose``)."""
    limit = files.max_upload_bytes
    declared = _declared_length(request)
    if declared is not None and declared > limit + FORM_OVERHEAD:
        raise _too_large(limit)
    _, params = parse_options_header(request.headers["content-type"])
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequestError("multipart body without a boundary", code="invalid_multipart")

    events: list[tuple[str, Any]] = []
    part = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part.header_value += data[start:end]

    def on_header_end() -> None:
        part.headers[part.header_field.strip().lower()] = part.header_value.strip()
        part.header_field = part.header_value = b""

    def on_part_begin() -> None:
        part.headers = {}
        events.append(("begin", None))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        events.append(("data", data[start:end]))

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": lambda: events.append(("headers", dict(part.headers))),
        "on_part_data": on_part_data,
        "on_part_end": lambda: events.append(("end", None)),
    }
    parser = MultipartParser(boundary, callbacks)
    writer: BlobWriter | None = None
    fields: dict[str, str] = {}
    file_part: _Part | None = None
    current = _Part()
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit + FORM_OVERHEAD:
                raise _too_large(limit)
            parser.write(chunk)
            for kind, payload in events:
                if kind == "begin":
                    current = _Part()
                elif kind == "headers":
                    current.headers = payload
                    _describe_part(current)
                    if current.is_file:
                        if writer is not None:
                            raise InvalidRequestError("send one file per request (field 'file')", code="too_many_files")
                        writer = files.writer()
                        file_part = current
                elif kind == "data":
                    if current.is_file and writer is not None:
                        await writer.write(payload)
                    else:
                        current.value += payload
                        if len(current.value) > MAX_FIELD_BYTES:
                            raise error_for_status(
                                413, "field_too_large", f"form field {current.name!r} exceeds {MAX_FIELD_BYTES} bytes"
                            )
                elif kind == "end" and not current.is_file:
                    fields[current.name] = current.value.decode("utf-8", "replace")
            events.clear()
        parser.finalize()
    except FormParserError as err:
        if writer is not None:
            await writer.abort()
        raise InvalidRequestError(f"invalid multipart body: {err}", code="invalid_multipart") from None
    except BaseException:
        if writer is not None:
            await writer.abort()
        raise
    if writer is None or file_part is None:
        raise InvalidRequestError(f"multipart body has no '{FILE_FIELD}' field", code="missing_file")
    filename = fields.get("filename") or file_part.filename
    content_type = fields.get("content_type") or file_part.content_type
    return await files.commit(writer, filename, content_type, api_key_id=key_id), fields


def _describe_part(part: _Part) -> None:
    _, params = parse_options_header(part.headers.get(b"content-disposition", b""))
    name = params.get(b"name", b"").decode("utf-8", "replace")
    raw_filename = params.get(b"filename")
    part.name = name
    filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
    if filename is not None:  # the escapes the HTML form-encoding algorithm applies to names
        filename = filename.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
    part.filename = filename
    ctype = part.headers.get(b"content-type")
    part.content_type = ctype.decode("latin-1") if ctype else None
    part.is_file = name == FILE_FIELD


# --------------------------------------------------------------------------- reading


async def file_record(request: Request) -> FileRecord:
    """The file the path names, if the caller may see it (404 ``file_not_found`` otherwise)."""
    file_id = request.path_params["file_id"]
    if parse_file_ref(f"runyard://files/{file_id}") is None:
        raise NotFoundError(f"file {file_id!r} not found", code="file_not_found")
    record = await gateway(request).files.get(file_id)
    await check_file(request, record, file_id)
    return record


def access_url(request: Request, record: FileRecord) -> str:
    base = gateway(request).config.files.public_url or str(request.base_url)
    return f"{base.rstrip('/')}/v1/files/{record.id}/content"


def describe(request: Request, record: FileRecord) -> dict[str, Any]:
    return record.to_dict(access_url=access_url(request, record))


async def get_file(request: Request) -> Response:
    return json_response(describe(request, await file_record(request)))


async def get_content(request: Request) -> Response:
    return await file_response(request, await file_record(request), gateway(request).files)


routes = [
    Route("/v1/files", upload, methods=["POST"]),
    Route("/v1/files/{file_id}", get_file, methods=["GET"]),
    Route("/v1/files/{file_id}/content", get_content, methods=["GET"]),
]

# The API description (server/openapi): one declaration per route.
_FILE_LINKS = {
    "GetFile": {"operationId": "getFile", "parameters": {"file_id": "$response.body#/id"}},
    "GetFileContent": {"operationId": "getFileContent", "parameters": {"file_id": "$response.body#/id"}},
}
operations = [
    Operation(
        "POST",
        "/v1/files",
        "Upload a file (multipart field `file`, or the raw body)",
        "files",
        "uploadFile",
        bodies={
            "multipart/form-data": {
                "type": "object",
                "required": [FILE_FIELD],
                "properties": {
                    FILE_FIELD: BINARY,
                    "filename": {"type": "string"},
                    "content_type": {"type": "string"},
                    "purpose": {"type": "string", "description": "an OpenAI upload: OpenAI's file object back"},
                },
            },
            "application/octet-stream": BINARY,
        },
        params=(Param("filename"), Param("content_type"), Param("X-Filename", "header")),
        response=ANY_OBJECT,
        status=201,
        links=_FILE_LINKS,
    ),
    Operation(
        "GET",
        "/v1/files/{file_id}",
        "A file's metadata (OpenAI's file object for a file uploaded with a purpose)",
        "files",
        "getFile",
        response=ANY_OBJECT,
    ),
    Operation(
        "GET",
        "/v1/files/{file_id}/content",
        "A file's bytes (served safely: see README Security)",
        "files",
        "getFileContent",
        response=BINARY,
        response_media="*/*",
        params=(Param("Range", "header"), Param("If-None-Match", "header"), Param("If-Range", "header")),
    ),
]
