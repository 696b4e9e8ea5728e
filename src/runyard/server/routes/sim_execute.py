"""Sim's raw HTTP route, as its docs call it with ``requests``: ``POST /api/workflows/{id}/execute``.

``X-API-Key`` auth (the gateway's); the inputs at the top level of the body, next to ``stream`` and
``selectedOutputs``. Sync: the run's result (``success``, ``output``, ``error``, ``logs``,
``metadata``). ``stream: true``: SSE of the blocks' ``{"blockId", "chunk"}`` events, then
``{"event": "done", "success", "output", "metadata": {"duration"}}``, then ``data: [DONE]``.
``X-Execution-Mode: async``: 202 ``{success, taskId, status: "queued", createdAt, links: {status}}``
(poll ``GET /api/jobs/{taskId}``). Errors speak Sim's legacy shape (``{"error", "code"}``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...backends.queue import TERMINAL
from ...errors import InvalidRequestError, RunyardError
from ...services.limits import ASYNC, SYNC
from ...services.workflows import EVENT
from ..access import check_file_refs
from ..http import DONE, EventStream, gateway, json_response, parse_object, read_body, sse_event
from ..openapi import ANY_OBJECT, Operation
from ..protocols import simstudio as sim
from ..ratelimit import enforce
from .simstudio import SIM_ERROR, speaks_sim
from .workflows import MAX_SYNC_WAIT_S, _result

CONTROL_KEYS = frozenset({"stream", "selectedOutputs"})  # the rest of the body is the workflow's input


async def execute(request: Request) -> Response:
    raw = await read_body(request)
    body = parse_object(raw) if raw.strip() else {}
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequestError("stream must be true or false", code="invalid_json")
    asynchronous = request.headers.get("x-execution-mode", "").lower() == "async"
    if asynchronous and stream:
        raise InvalidRequestError("choose one of stream and async execution", code="invalid_mode")
    await enforce(request, ASYNC if asynchronous else SYNC)
    wid = request.path_params["wid"]
    payload = {k: v for k, v in body.items() if k not in CONTROL_KEYS}
    await check_file_refs(request, payload)
    task = await gateway(request).workflows.submit(
        wid,
        payload,
        stream=stream,
        selected_outputs=sim.selected_outputs(body),
        api_key_id=request.state.api_key_id,
    )
    links = {"status": f"/api/jobs/{task['id']}"}
    if asynchronous:
        queued = {"success": True, "taskId": task["id"], "status": "queued", "createdAt": task["created_at"]}
        return json_response({**queued, "links": links}, status=202)
    if stream:
        return EventStream(_stream(request, task["id"]))
    done = await gateway(request).tasks.wait(task["id"], MAX_SYNC_WAIT_S)
    result = await _result(request, done)
    if result is None:  # still running: poll the job
        return json_response({"success": True, "taskId": task["id"], "status": done["status"], "links": links}, 202)
    return json_response(result)


async def _stream(request: Request, task_id: str) -> AsyncIterator[bytes]:
    """The run's chunks, then its ``done`` event and ``[DONE]`` (Sim's stream)."""
    events = await gateway(request).tasks.events(task_id)
    try:
        async for event in events:
            if event["type"] == EVENT and "chunk" in event:
                yield sse_event({"blockId": event.get("blockId"), "chunk": event["chunk"]})
            elif event["type"] == EVENT and event.get("event") == "result":
                yield sse_event(_done(event["result"]))
                break
            elif event["type"] == "status" and event.get("status") in TERMINAL:
                yield sse_event(_done(await _result(request, event["task"]) or {}))
                break
    except RunyardError as err:
        yield sse_event({"event": "error", **sim.error_body("/api/", sim.EXECUTION_ERROR, err.message)})
    yield DONE


def _done(result: dict[str, Any]) -> dict[str, Any]:
    """Sim's ``done`` event for a finished run (``error`` only when it failed)."""
    done: dict[str, Any] = {
        "event": "done",
        "success": bool(result.get("success")),
        "output": result.get("output") or {},
        "metadata": {"duration": (result.get("metadata") or {}).get("duration", result.get("total_duration"))},
    }
    if result.get("error"):
        error = result["error"]
        done["error"] = error.get("message") if isinstance(error, dict) else str(error)
    return done


routes = [Route("/api/workflows/{wid:path}/execute", speaks_sim(execute), methods=["POST"])]

# The API description (server/openapi): one declaration per route.
operations = [
    Operation(
        "POST",
        "/api/workflows/{wid:path}/execute",
        "Sim: execute a workflow (raw HTTP; inputs at the top level)",
        "sim",
        "simExecuteRaw",
        body=ANY_OBJECT,
        body_required=False,
        response=ANY_OBJECT,
        also=(202,),
        stream=True,
        errors=SIM_ERROR,
    )
]
