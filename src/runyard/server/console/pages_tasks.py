"""Tasks pages: the list, a task followed live (the API's event stream), cancel, and files."""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ...errors import NotFoundError
from ...files import parse_file_ref
from ...services.files import FileRecord
from ...services.tasks import TERMINAL
from ..access import check_file, path_task_id, scope_workspace
from ..http import gateway
from ..routes.tasks import STATUSES, _sse
from .gate import form_handler, redirect
from .render import file_refs, render

PAGE = 50
# Shown in the page (an <img>/<audio>/<video>); everything else only ever downloads.
PREVIEW_TYPES = re.compile(r"image/(png|jpeg|gif|webp)|audio/[a-z0-9.+-]+|video/(mp4|webm|ogg)")


async def task_list(request: Request) -> Response:
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        status = None
    page = await gateway(request).tasks.list_tasks(
        app=q.get("app") or None,
        status=status,
        limit=PAGE,
        cursor=q.get("cursor") or None,
        workspace=scope_workspace(request),
    )
    filters = {k: v for k, v in (("app", q.get("app")), ("status", status)) if v}
    return render(
        request,
        "tasks.html",
        page=page,
        filters=filters,
        statuses=STATUSES,
        next_query={**filters, "cursor": page["next_cursor"]} if page["next_cursor"] else None,
    )


async def _files(request: Request, ids: list[str]) -> list[FileRecord]:
    """The records of the files a task references that the caller may see."""
    out = []
    for file_id in ids[:50]:
        try:
            record = await gateway(request).files.get(file_id)
            await check_file(request, record, file_id)
        except NotFoundError:
            continue
        out.append(record)
    return out


async def task_detail(request: Request) -> Response:
    task_id = await path_task_id(request)
    gw = gateway(request)
    task = await gw.tasks.get(task_id)
    inputs = await _files(request, file_refs(task.get("input")))
    outputs = await _files(request, file_refs(task.get("output")))
    return render(
        request,
        "task.html",
        task=task,
        input_files=inputs,
        output_files=outputs,
        terminal=task["status"] in TERMINAL,
        preview=lambda r: bool(PREVIEW_TYPES.fullmatch(r.content_type.split(";", 1)[0].strip())),
    )


async def task_events(request: Request) -> Response:
    """The API's task event stream (``/v1/tasks/{id}/events``), for the page's EventSource."""
    task_id = await path_task_id(request)
    events = await gateway(request).tasks.events(task_id)
    return StreamingResponse(
        _sse(events), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@form_handler
async def task_cancel(request: Request, _form: FormData) -> Response:
    task_id = await path_task_id(request)
    await gateway(request).tasks.cancel(task_id)
    return redirect(f"/ui/tasks/{quote(task_id)}")


async def file_content(request: Request) -> Response:
    """A stored file: always ``nosniff`` and sandboxed; inline only for previewable media
    (``?inline=1``), a download otherwise."""
    file_id = request.path_params["file_id"]
    if parse_file_ref(f"runyard://files/{file_id}") is None:
        raise NotFoundError(f"file {file_id!r} not found", code="file_not_found")
    gw = gateway(request)
    record = await gw.files.get(file_id)
    await check_file(request, record, file_id)
    media = record.content_type.split(";", 1)[0].strip()
    inline = request.query_params.get("inline") == "1" and PREVIEW_TYPES.fullmatch(media) is not None
    fallback = record.filename.encode("ascii", "replace").decode("ascii")
    fallback = re.sub(r'[?"\\\r\n]', "_", fallback)
    disposition = "inline" if inline else "attachment"
    encoded = quote(record.filename, safe="")
    headers = {
        "Content-Disposition": f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Length": str(record.size),
        "Cache-Control": "private, no-store",
    }
    stream = await gw.files.open_stream(record, start=0, end=record.size)
    return StreamingResponse(
        stream, media_type=record.content_type if inline else _download_type(media), headers=headers
    )


def _download_type(media: str) -> str:
    """What a download is sent as: its own type when harmless, else a byte stream."""
    return (
        media
        if PREVIEW_TYPES.fullmatch(media) or media in ("application/json", "text/plain")
        else ("application/octet-stream")
    )


routes_spec = [
    ("/tasks", task_list, ["GET"]),
    ("/tasks/{task_id}", task_detail, ["GET"]),
    ("/tasks/{task_id}/events", task_events, ["GET"]),
    ("/tasks/{task_id}/cancel", task_cancel, ["POST"]),
    ("/files/{file_id}", file_content, ["GET"]),
]
