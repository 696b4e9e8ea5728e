"""OpenAI's ``/v1/batches`` (create, get, list, cancel) over the ``runyard/chat-batch`` task;
see services/openai_batches.py."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import NotFoundError
from ...services.openai_batches import CHAT_ENDPOINT, OpenAIBatches
from ...services.openai_params import UnsupportedParameterError, invalid
from ..access import check_file, require, visible
from ..http import caller_key_id, gateway, idempotency_key, idempotent, json_response, read_body, validate_json
from ..openapi import IDEMPOTENCY_KEY, openai_operation
from .openai_query import BatchListQuery, query_params, read_query


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1)
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None


def batches(request: Request) -> OpenAIBatches:
    found: OpenAIBatches = request.app.state.openai_batches
    return found


def _not_found(batch_id: str) -> NotFoundError:
    return NotFoundError(f"batch {batch_id!r} not found", code="batch_not_found")


async def _row(request: Request) -> dict[str, Any]:
    batch_id = request.path_params["batch_id"]
    row = await batches(request).records.get_batch(batch_id)
    if row is None:
        raise _not_found(batch_id)
    await require(request, row["api_key_id"], _not_found(batch_id))
    return row


def check_lines(raw: bytes, endpoint: str) -> int:
    """The number of requests in a batch input file; 400 naming the first bad line."""
    seen: set[str] = set()
    count = 0
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise invalid(f"input file line {number} is not JSON", "input_file_id", "invalid_batch_line") from None
        if not isinstance(item, dict) or not isinstance(item.get("body"), dict):
            raise invalid(f"input file line {number} needs a 'body' object", "input_file_id", "invalid_batch_line")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or custom_id in seen:
            message = f"input file line {number} needs a 'custom_id' string unique in the file"
            raise invalid(message, "input_file_id", "invalid_batch_line")
        seen.add(custom_id)
        if item.get("url", endpoint) != endpoint or item.get("method", "POST") != "POST":
            message = f"input file line {number}: every line must be POST {endpoint} (the batch's endpoint)"
            raise invalid(message, "input_file_id", "invalid_batch_line")
        count += 1
    if count == 0:
        raise invalid("the input file holds no requests", "input_file_id", "empty_batch")
    return count


async def create(request: Request) -> Response:
    raw = await read_body(request)
    body = validate_json(BatchCreate, raw)
    if body.endpoint != CHAT_ENDPOINT:
        raise UnsupportedParameterError(f"endpoint must be {CHAT_ENDPOINT} (the one Runyard batches)", param="endpoint")
    if body.completion_window != "24h":
        raise invalid("completion_window must be '24h'", "completion_window")
    gw = gateway(request)
    purpose = await batches(request).records.file_purpose(body.input_file_id)
    try:
        record = await gw.files.get(body.input_file_id)
        await check_file(request, record, body.input_file_id)
    except NotFoundError:
        raise invalid(f"file {body.input_file_id!r} not found", "input_file_id", "file_not_found") from None
    if purpose != "batch":
        raise invalid("the input file must be uploaded with purpose 'batch'", "input_file_id", "invalid_file_purpose")
    total = check_lines(await gw.files.read(record), body.endpoint)

    async def produce() -> Response:
        batch = await batches(request).create(
            record,
            total,
            endpoint=body.endpoint,
            window=body.completion_window,
            metadata=body.metadata,
            api_key_id=caller_key_id(request),
        )
        return json_response(batch)

    return await idempotent(request, idempotency_key(request), raw, produce)  # one batch per Idempotency-Key


async def retrieve(request: Request) -> Response:
    return json_response(await batches(request).describe(await _row(request)))


async def cancel(request: Request) -> Response:
    return json_response(await batches(request).cancel(await _row(request)))


async def list_batches(request: Request) -> Response:
    q = read_query(BatchListQuery, request)
    service = batches(request)
    rows = [row for row in await service.records.list_batches() if await visible(request, row["api_key_id"])]
    if q.after:
        ids = [row["id"] for row in rows]
        rows = rows[ids.index(q.after) + 1 :] if q.after in ids else []
    page = [await service.describe(row) for row in rows[: q.limit]]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(rows) > len(page),
        }
    )


routes = [
    Route("/v1/batches", create, methods=["POST"]),
    Route("/v1/batches", list_batches, methods=["GET"]),
    Route("/v1/batches/{batch_id}", retrieve, methods=["GET"]),
    Route("/v1/batches/{batch_id}/cancel", cancel, methods=["POST"]),
]

# The API description (server/openapi): one declaration per route.
_BATCH_LINKS = {
    "GetBatch": {"operationId": "getBatch", "parameters": {"batch_id": "$response.body#/id"}},
    "CancelBatch": {"operationId": "cancelBatch", "parameters": {"batch_id": "$response.body#/id"}},
}
operations = [
    openai_operation(
        "POST",
        "/v1/batches",
        f"create a batch (endpoint {CHAT_ENDPOINT}, completion_window 24h)",
        "createBatch",
        body=BatchCreate,
        params=(IDEMPOTENCY_KEY,),
        links=_BATCH_LINKS,
    ),
    openai_operation(
        "GET",
        "/v1/batches",
        "batches, newest first",
        "listBatches",
        params=query_params(BatchListQuery),
    ),
    openai_operation("GET", "/v1/batches/{batch_id}", "a batch", "getBatch"),
    openai_operation("POST", "/v1/batches/{batch_id}/cancel", "cancel a batch", "cancelBatch"),
]
