"""The ``simstudio-sdk`` wire protocol (see shared/protocols/simstudio-sdk.md) over the workflow service.

``POST /api/v2/workflows/{id}/execute`` (sync; ``async`` → 202 ``{data: {runId, statusUrl}}``;
``stream`` → the sync JSON, as this client reads one JSON body), ``GET /api/v2/workflows/{id}/runs/{runId}``,
``GET /api/workflows/{id}/status``, ``GET /api/jobs/{id}``. Auth is the gateway's (``X-API-Key``);
``/api/users/me/usage-limits`` lives in :mod:`.usage`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...backends.queue import TERMINAL
from ...errors import InvalidRequestError
from ...services.limits import ASYNC, SYNC
from ..access import check_file_refs, check_task
from ..http import gateway, json_response, parse_object, read_body
from ..openapi import ANY_OBJECT, Operation
from ..ratelimit import enforce
from .workflows import MAX_SYNC_WAIT_S, _result, get_job

_STATUS = {"queued": "pending", "processing": "running"}


async def execute(request: Request) -> Response:
    raw = await read_body(request)
    body = parse_object(raw) if raw.strip() else {}
    asynchronous = bool(body.get("async"))
    await enforce(request, ASYNC if asynchronous else SYNC)
    wid = request.path_params["wid"]
    selected = body.get("selectedOutputs")
    if selected is not None and not (isinstance(selected, list) and all(isinstance(s, str) for s in selected)):
        raise InvalidRequestError("selectedOutputs must be a list of strings", code="validation_error")
    value = body.get("input", {})
    payload = value if isinstance(value, dict) else {"input": value}
    service = gateway(request).workflows
    await check_file_refs(request, payload)
    task = await service.submit(wid, payload, selected_outputs=selected, api_key_id=request.state.api_key_id)
    run_id = task["id"]
    if asynchronous:
        status_url = f"{str(request.base_url).rstrip('/')}/api/v2/workflows/{wid}/runs/{run_id}"
        return json_response({"data": {"runId": run_id, "statusUrl": status_url, "status": "pending"}}, status=202)
    timeout = body.get("executionTimeoutSeconds")
    wait = min(float(timeout), MAX_SYNC_WAIT_S) if isinstance(timeout, int | float) else MAX_SYNC_WAIT_S
    done = await gateway(request).tasks.wait(run_id, wait)
    return json_response({"data": await _run_data(request, wid, done, include_output=True)})


async def _run_data(request: Request, wid: str, task: dict[str, Any], *, include_output: bool) -> dict[str, Any]:
    result = await _result(request, task) if task["status"] in TERMINAL else None
    error = (result or {}).get("error") or task.get("error")
    data: dict[str, Any] = {
        "runId": task["id"],
        "workflowId": wid,
        "status": _STATUS.get(task["status"], task["status"]),
        "error": {"code": error.get("code"), "message": error.get("message")} if error else None,
        "durationMs": task.get("duration_ms"),
        "startedAt": task.get("started_at"),
        "endedAt": task.get("finished_at"),
    }
    if include_output:
        data["output"] = (result or {}).get("output")
        data["traceSpans"] = (result or {}).get("trace_spans")
    return data


async def get_run(request: Request) -> Response:
    await check_task(request, request.path_params["run_id"])
    task = await gateway(request).tasks.get(request.path_params["run_id"])
    include = request.query_params.get("includeOutput", "true").lower() != "false"
    return json_response({"data": await _run_data(request, request.path_params["wid"], task, include_output=include)})


async def status(request: Request) -> Response:
    st = await gateway(request).workflows.status(request.path_params["wid"])
    keys = ("isDeployed", "deployedAt", "needsRedeployment", "deployed_version", "aliases")
    return json_response({k: st[k] for k in keys})


routes = [
    Route("/api/v2/workflows/{wid:path}/execute", execute, methods=["POST"]),
    Route("/api/v2/workflows/{wid:path}/runs/{run_id}", get_run, methods=["GET"]),
    Route("/api/workflows/{wid:path}/status", status, methods=["GET"]),
    Route("/api/jobs/{task_id}", get_job, methods=["GET"]),
]

# The API description (server/openapi): one declaration per route.
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
    ),
    Operation(
        "GET", "/api/v2/workflows/{wid:path}/runs/{run_id}", "Sim: a run", "sim", "simGetRun", response=ANY_OBJECT
    ),
    Operation(
        "GET",
        "/api/workflows/{wid:path}/status",
        "Sim: a workflow's status",
        "sim",
        "simWorkflowStatus",
        response=ANY_OBJECT,
    ),
    Operation("GET", "/api/jobs/{task_id}", "Sim: a job", "sim", "simGetJob", response=ANY_OBJECT),
]
