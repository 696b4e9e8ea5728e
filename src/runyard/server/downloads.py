"""The one download path: every stored file the gateway serves goes out through :func:`file_response`.

Whatever a user uploaded is served so that it cannot run as the gateway's own site:
``X-Content-Type-Options: nosniff``, a sandboxing ``Content-Security-Policy``, and
``Content-Disposition: attachment`` for anything a browser would render actively (HTML, SVG,
XML, JavaScript, PDF, ...). Only passive media (raster images, audio, video, plain text) may be
shown inline. Ranges (one ``bytes=`` range), ``ETag`` and ``If-None-Match`` are honoured.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import error_for_status
from ..services.files import FileRecord, FileService

__all__ = ["SAFE_HEADERS", "content_disposition", "file_response", "is_passive"]

SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Media a browser only displays (never runs): the only types served inline.
_PASSIVE = re.compile(r"image/(png|jpeg|gif|webp|avif|bmp)|audio/[\w.+-]+|video/[\w.+-]+|text/plain")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def is_passive(content_type: str) -> bool:
    """True for media a browser displays but never executes (everything else is an attachment)."""
    return _PASSIVE.fullmatch(content_type.split(";", 1)[0].strip().lower()) is not None


def content_disposition(filename: str, content_type: str) -> str:
    kind = "inline" if is_passive(content_type) else "attachment"
    fallback = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    fallback = fallback.replace('"', "_").replace("\\", "_")
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _media_type(content_type: str) -> str:
    """The stored type, unless it is not a plain ``type/subtype[; params]`` (then octet-stream)."""
    if re.fullmatch(r"[\w.+-]+/[\w.+-]+(\s*;[^\r\n]*)?", content_type or ""):
        return content_type
    return "application/octet-stream"


async def file_response(request: Request, record: FileRecord, files: FileService) -> Response:
    """Serve ``record``'s bytes with the safe headers (the only way a stored file leaves the gateway)."""
    etag = f'"{record.sha256}"'
    media_type = _media_type(record.content_type)
    headers = {
        **SAFE_HEADERS,
        "Content-Disposition": content_disposition(record.filename, media_type),
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Cache-Control": "private, max-age=31536000, immutable",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    start, end, status = 0, record.size, 200
    range_header = request.headers.get("range")
    if range_header and (request.headers.get("if-range") in (None, etag)):
        parsed = _parse_range(range_header, record.size)
        if parsed is not None:
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{record.size}"
    headers["Content-Length"] = str(end - start)
    stream: AsyncIterator[bytes] = await files.open_stream(record, start=start, end=end)
    return StreamingResponse(stream, status_code=status, media_type=media_type, headers=headers)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` for one ``bytes=`` range; ``None`` to serve everything.

    Raises a 416 error for a range that cannot be satisfied."""
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None  # multiple or unknown ranges: the whole file is a valid answer
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> Exception:
    return error_for_status(416, "range_not_satisfiable", f"requested range is outside the file's {size} bytes")
