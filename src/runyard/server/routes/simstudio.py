"""The ``simstudio-sdk`` wire protocol (see shared/protocols/simstudio-sdk.md) over the workflow service.

``POST /api/v2/workflows/{id}/execute`` (sync; ``async`` → 202 ``{data: {runId, statusUrl}}``;
``stream`` → the sync JSON, as this client reads one JSON body), ``GET /api/v2/workflows/{id}/runs/{runId}``,
``GET /api/workflows/{id}/status``, ``GET /api/jobs/{id}``. Auth is the gateway's (``X-API-Key``);
``/api/users/me/usage-limits`` lives in :mod:`.usage`, the raw ``POST /api/workflows/{id}/execute``
in :mod:`.sim_execute`. Errors on these paths, the guard's refusals included (:func:`refusal`),
speak Sim's vocabulary and shapes (:func:`..protocols.simstudio.sim_error`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...backends.queue import TERMINAL
from ...errors import RunyardError
from ...services.limits import ASYNC, SYNC
from ..access import check_file_refs, check_task, scope_workspace
from ..http import error_response, gateway, json_response, parse_object, read_body
from ..openapi import ANY_OBJECT, ErrorShape, Operation
from ..protocols import simstudio as sim
from ..ratelimit import enforce
from .workflows import MAX_SYNC_WAIT_S, _result, get_job

Handler = Callable[[Request], Awaitable[Response]]
_REPLACED = frozenset({b"content-length", b"content-type"})


def refusal(path: str, response: Response) -> Response:
    """``response`` (a Runyard error answer) in Sim's vocabulary and shape for ``path``; for the
    guard's refusals on Sim's paths (only refusals pay for it) and these routes' errors."""
    try:
        error = orjson.loads(bytes(response.body))["error"]
        code, message = str(error["code"]), str(error["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return response
    status, sim_code = sim.sim_error(response.status_code, code)
    answer = json_response(sim.error_body(path, sim_code, message), status=status)
    answer.raw_headers.extend((k, v) for k, v in response.raw_headers if k not in _REPLACED)
    return answer


def speaks_sim(handler: Handler) -> Handler:
    """``handler`` with its errors answered in Sim's vocabulary and shape."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except RunyardError as err:
            return refusal(request.url.path, error_response(err))

    return wrapped


async def execute(request: Request) -> Response:
    raw = await read_body(request)
    body = parse_object(raw) if raw.strip() else {}
    asynchronous = bool(body.get("async"))
    await enforce(request, ASYNC if asynchronous else SYNC)
    wid = request.path_params["wid"]
    selected = sim.selected_outputs(body)
    payload = sim.workflow_input(body)
    service = gateway(request).workflows
    await check_file_refs(request, payload)
    task = await service.submit(wid, payload, selected_outputs=selected, api_key_id=request.state.api_key_id)
    run_id = task["id"]
    if asynchronous:
        status_url = f"{str(request.base_url).rstrip('/')}/api/v2/workflows/{wid}/runs/{run_id}"
        return json_response({"data": {"runId": run_id, "statusUrl": status_url, "status": "pending"}}, status=202)
    done = await gateway(request).tasks.wait(run_id, sim.wait_s(body, MAX_SYNC_WAIT_S))
    return json_response({"data": await _run_data(request, wid, done, include_output=True)})


async def _run_data(request: Request, wid: str, task: dict[str, Any], *, include_output: bool) -> dict[str, Any]:
    result = await _result(request, task) if task["status"] in TERMINAL else None
    return sim.run_data(wid, task, result, include_output=include_output)


async def get_run(request: Request) -> Response:
    await check_task(request, request.path_params["run_id"])
    task = await gateway(request).tasks.get(request.path_params["run_id"])
    include = request.query_params.get("includeOutput", "true").lower() != "false"
    return json_response({"data": await _run_data(request, request.path_params["wid"], task, include_output=include)})


async def status(request: Request) -> Response:
    st = await gateway(request).workflows.status(request.path_params["wid"], viewer=scope_workspace(request))
    return json_response({k: st[k] for k in sim.STATUS_KEYS})


routes = [
    Route("/api/v2/workflows/{wid:path}/execute", speaks_sim(execute), methods=["POST"]),
    Route("/api/v2/workflows/{wid:path}/runs/{run_id}", speaks_sim(get_run), methods=["GET"]),
    Route("/api/workflows/{wid:path}/status", speaks_sim(status), methods=["GET"]),
    Route("/api/jobs/{task_id}", speaks_sim(get_job), methods=["GET"]),
]

# The API description (server/openapi): one declaration per route.
# Sim's two error bodies: ``{"error": {"code", "message"}}`` (v2) and ``{"error": "...", "code": "..."}`` (legacy).
SIM_ERROR = ErrorShape(
    "SimError",
    {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    },
                ]
            },
            "code": {"type": "string"},
        },
    },
)

operations = [
    Operation(
        "POST",
        "/api/v2/workflows/{wid:path}/execute",
        "Sim: execute a workflow",
        "sim",
        "simExecute",
        body=ANY_OBJECT,
        body_required=False,
        response=ANY_OBJECT,
        also=(202,),
        errors=SIM_ERROR,
    ),
    Operation(
        "GET",
        "/api/v2/workflows/{wid:path}/runs/{run_id}",
        "Sim: a run",
        "sim",
        "simGetRun",
        response=ANY_OBJECT,
        errors=SIM_ERROR,
    ),
    Operation(
        "GET",
        "/api/workflows/{wid:path}/status",
        "Sim: a workflow's status",
        "sim",
        "simWorkflowStatus",
        response=ANY_OBJECT,
        errors=SIM_ERROR,
    ),
    Operation("GET", "/api/jobs/{task_id}", "Sim: a job", "sim", "simGetJob", response=ANY_OBJECT, errors=SIM_ERROR),
]
