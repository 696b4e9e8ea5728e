"""The OpenAI Responses API: ``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}``,
``GET /v1/responses/{id}/input_items`` (see services/responses.py)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import NotFoundError
from ...services.ai import CallContext
from ...services.openai_params import invalid
from ...services.responses import ResponsesService
from ...services.responses_translate import ResponsesRequest
from ..access import require
from ..http import (
    EventStream,
    caller_key_id,
    idempotency_key,
    idempotent,
    json_response,
    read_body,
    validate_json,
)
from ..openapi import IDEMPOTENCY_KEY, openai_operation
from .openai_query import InputItemsQuery, query_params, read_query


def service(request: Request) -> ResponsesService:
    """The app's Responses service (made in ``server/app.py``)."""
    found: ResponsesService = request.app.state.openai_responses
    return found


def _not_found(response_id: str) -> NotFoundError:
    return NotFoundError(f"response {response_id!r} not found", code="response_not_found")


async def stored(request: Request, response_id: str) -> dict[str, Any]:
    """A stored response the caller may see; 404 ``response_not_found`` otherwise."""
    row = await service(request).get(response_id)
    if row is None:
        raise _not_found(response_id)
    await require(request, row["api_key_id"], _not_found(response_id))
    return row


async def create(request: Request) -> Response:
    raw = await read_body(request)
    req = validate_json(ResponsesRequest, raw)
    previous = None
    if req.previous_response_id:
        try:
            previous = await stored(request, req.previous_response_id)
        except NotFoundError:
            raise invalid(
                f"previous response {req.previous_response_id!r} not found (responses made with store=false "
                "are not kept)",
                "previous_response_id",
                "previous_response_not_found",
            ) from None
    ctx = CallContext(api_key_id=caller_key_id(request))
    responses = service(request)
    if req.stream:
        return EventStream(await responses.open_stream(req, ctx, previous))

    async def produce() -> Response:
        return json_response(await responses.create(req, ctx, previous))

    return await idempotent(request, idempotency_key(request), raw, produce)  # a retry gets the first answer


async def retrieve(request: Request) -> Response:
    return json_response((await stored(request, request.path_params["response_id"]))["body"])


async def delete(request: Request) -> Response:
    response_id = request.path_params["response_id"]
    await stored(request, response_id)
    await service(request).delete(response_id)
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


async def list_input_items(request: Request) -> Response:
    row = await stored(request, request.path_params["response_id"])
    items: list[dict[str, Any]] = list(row["input_items"])
    q = read_query(InputItemsQuery, request)
    if q.order == "desc":
        items.reverse()
    if q.after:
        ids = [item.get("id") for item in items]
        if q.after not in ids:
            raise invalid(f"no input item {q.after!r} in this response", "after")
        items = items[ids.index(q.after) + 1 :]
    page = items[: q.limit]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None,
            "has_more": len(items) > len(page),
        }
    )


routes = [
    Route("/v1/responses", create, methods=["POST"]),
    Route("/v1/responses/{response_id}", retrieve, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
]

# The API description (server/openapi): one declaration per route.
operations = [
    openai_operation(
        "POST",
        "/v1/responses",
        "create a response",
        "createResponse",
        body=ResponsesRequest,
        stream=True,
        params=(IDEMPOTENCY_KEY,),
        links={"GetResponse": {"operationId": "getResponse", "parameters": {"response_id": "$response.body#/id"}}},
    ),
    openai_operation("GET", "/v1/responses/{response_id}", "a stored response", "getResponse"),
    openai_operation("DELETE", "/v1/responses/{response_id}", "delete a stored response", "deleteResponse"),
    openai_operation(
        "GET",
        "/v1/responses/{response_id}/input_items",
        "a stored response's input items",
        "listResponseInputItems",
        params=query_params(InputItemsQuery),
    ),
]
