"""OpenAI's ``/v1/files`` beside the native one: a multipart upload with a ``purpose`` field is
an OpenAI upload (answered with OpenAI's file object); ``GET /v1/files`` lists OpenAI-uploaded
files; ``GET /v1/files/{id}`` answers in OpenAI's shape for those, natively for the rest;
``DELETE /v1/files/{id}``. Content downloads stay with the native route (same bytes)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...services.files import FileRecord
from ...services.openai_params import invalid
from ...services.openai_records import OpenAIRecords
from ..access import visible
from ..http import caller_key_id, gateway, json_response
from ..openapi import openai_operation
from . import files as native
from .openai_query import PURPOSES, FileListQuery, query_params, read_query


def records(request: Request) -> OpenAIRecords:
    found: OpenAIRecords = request.app.state.openai_records
    return found


def file_object(record: FileRecord, purpose: str) -> dict[str, Any]:
    return {
        "id": record.id,
        "object": "file",
        "bytes": record.size,
        "created_at": int(record.created_at.timestamp()),
        "filename": record.filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


async def upload(request: Request) -> Response:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data":
        return await native.upload(request)
    files = gateway(request).files
    key_id = caller_key_id(request)
    record, fields = await native.upload_multipart(request, files, key_id)
    purpose = fields.get("purpose")
    if purpose is None:
        return json_response(native.describe(request, record), status=201)
    if purpose not in PURPOSES:
        await records(request).delete_file(record.id)
        raise invalid(f"purpose must be one of {', '.join(PURPOSES)}", "purpose")
    await records(request).add_file(record.id, purpose, key_id)
    return json_response(file_object(record, purpose))


async def list_files(request: Request) -> Response:
    q = read_query(FileListQuery, request)
    rows = await records(request).list_files(q.purpose, newest_first=q.order == "desc")
    data = [_row_object(row) for row in rows if await visible(request, row["api_key_id"])]
    if q.after:
        ids = [d["id"] for d in data]
        data = data[ids.index(q.after) + 1 :] if q.after in ids else []
    page = data[: q.limit]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(data) > len(page),
        }
    )


def _row_object(row: dict[str, Any]) -> dict[str, Any]:
    created: datetime = row["created_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    record = FileRecord(
        id=row["id"],
        filename=row["filename"],
        content_type=row["content_type"],
        size=int(row["size"]),
        sha256=row["sha256"],
        created_at=created,
        api_key_id=row["api_key_id"],
    )
    return file_object(record, row["purpose"])


async def get_file(request: Request) -> Response:
    purpose = await records(request).file_purpose(request.path_params["file_id"])
    if purpose is None:
        return await native.get_file(request)
    record = await native.file_record(request)
    return json_response(file_object(record, purpose))


async def delete_file(request: Request) -> Response:
    record = await native.file_record(request)  # 404 for another workspace's file
    await records(request).delete_file(record.id)
    return json_response({"id": record.id, "object": "file", "deleted": True})


routes = [
    Route("/v1/files", upload, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", get_file, methods=["GET"]),
    Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
]

# The API description (server/openapi): one declaration per route. POST /v1/files and
# GET /v1/files/{file_id} are declared with the native routes (routes/files.py): they answer both.
operations = [
    openai_operation(
        "GET",
        "/v1/files",
        "files uploaded with a purpose",
        "listFiles",
        params=query_params(FileListQuery),
    ),
    openai_operation("DELETE", "/v1/files/{file_id}", "delete a file", "deleteFile"),
]
