"""Workflows: ``/v1/workflows`` (save, validate, publish, aliases, status, execute) and ``/v1/jobs``.

Every execution is a task of the built-in ``runyard/workflow`` app: sync waits for it, async
answers ``{task_id, status: "queued", links}``, stream relays its ``workflow`` events as SSE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...backends.queue import TERMINAL
from ...errors import InvalidRequestError, RunyardError
from ...services.limits import ASYNC, SYNC
from ...services.workflows import EVENT, WorkflowService
from ..access import check_file_refs, check_task, scope_workspace
from ..http import DONE, EventStream, gateway, json_response, parse_object, read_body, sse_error, sse_event, validate
from ..openapi import ANY_OBJECT, Operation
from ..ratelimit import enforce
from .audit import audit

MAX_SYNC_WAIT_S = 300.0


def _service(request: Request) -> WorkflowService:
    service: WorkflowService = gateway(request).workflows
    return service


async def _definition_body(request: Request) -> str | bytes | dict[str, Any]:
    raw = await read_body(request)
    ctype = request.headers.get("content-type", "")
    if "yaml" in ctype or "text/plain" in ctype:
        return raw
    data = parse_object(raw)
    if isinstance(data.get("yaml"), str):
        return str(data["yaml"])
    if isinstance(data.get("definition"), dict):
        return dict(data["definition"])
    return data


async def save_workflow(request: Request) -> Response:
    body = await _definition_body(request)
    key_id = getattr(request.state, "api_key_id", None)
    saved = await _service(request).save(body, viewer=scope_workspace(request), created_by=key_id)
    return json_response(saved, status=201)


async def validate_workflow(request: Request) -> Response:
    definition = _service(request).check(await _definition_body(request))
    blocks = [{"id": b["id"], "kind": b["kind"]} for b in definition["blocks"]]
    return json_response({"valid": True, "name": definition["name"], "blocks": blocks, "problems": []})


async def validate_stored(request: Request) -> Response:
    """``POST /v1/workflows/{id}[@alias]/validate``: can the stored workflow run as it stands?"""
    report = await _service(request).validate_ref(request.path_params["wid"], viewer=scope_workspace(request))
    return json_response(report)


async def list_workflows(request: Request) -> Response:
    return json_response({"object": "list", "data": await _service(request).list_all(viewer=scope_workspace(request))})


async def get_workflow(request: Request) -> Response:
    return json_response(await _service(request).status(request.path_params["wid"], viewer=scope_workspace(request)))


class PublishBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str | None = Field(default="main", max_length=64, description="moves to the new version; null: none")


async def publish_workflow(request: Request) -> Response:
    raw = await read_body(request)
    body = validate(PublishBody, parse_object(raw) if raw.strip() else {})
    wid = request.path_params["wid"]
    published = await _service(request).publish(wid, alias=body.alias, viewer=scope_workspace(request))
    details = {"version": published["published_version"], "alias": body.alias}
    await audit(request, "workflow.published", target=wid, details=details)
    return json_response(published, status=201)


class AliasBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)


async def set_alias(request: Request) -> Response:
    body = validate(AliasBody, parse_object(await read_body(request)))
    wid, alias = request.path_params["wid"], request.path_params["alias"]
    status = await _service(request).set_alias(wid, alias, body.version, viewer=scope_workspace(request))
    await audit(request, "workflow.alias_moved", target=wid, details={"alias": alias, "version": body.version})
    return json_response(status)


async def workflow_status(request: Request) -> Response:
    status = await _service(request).status(request.path_params["wid"], viewer=scope_workspace(request))
    status.pop("draft")
    return json_response(status)


class ExecuteBody(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    input: dict[str, Any] | None = None
    stream: bool = False
    selected_outputs: list[str] | None = Field(default=None, alias="selectedOutputs")
    async_execution: bool = Field(default=False, alias="async")
    version: int | None = Field(default=None, ge=1)
    alias: str | None = Field(default=None, max_length=64)
    timeout: float | None = Field(default=None, gt=0)


async def execute_workflow(request: Request) -> Response:
    raw = await read_body(request)
    data = parse_object(raw) if raw.strip() else {}
    body = validate(ExecuteBody, data)
    if body.input is None:  # Sim's SDK sends the input fields at the top level
        body.input = dict(body.model_extra or {})
    asynchronous = body.async_execution or request.headers.get("x-execution-mode", "").lower() == "async"
    if asynchronous and body.stream:
        raise InvalidRequestError("choose one of stream and async", code="invalid_mode")
    await enforce(request, ASYNC if asynchronous else SYNC)
    wid = request.path_params["wid"]
    ref = f"{wid}@{body.alias}" if body.alias and "@" not in wid else wid
    service = _service(request)
    await check_file_refs(request, body.input)
    task = await service.submit(
        ref,
        body.input,
        version=body.version,
        stream=body.stream,
        selected_outputs=body.selected_outputs,
        api_key_id=request.state.api_key_id,
    )
    if asynchronous:
        links = {"status": f"/v1/jobs/{task['id']}"}
        return json_response({"success": True, "task_id": task["id"], "status": "queued", "links": links}, 202)
    if body.stream:
        return EventStream(_stream(request, task["id"]))
    tasks = gateway(request).tasks
    done = await tasks.wait(task["id"], min(body.timeout or MAX_SYNC_WAIT_S, MAX_SYNC_WAIT_S))
    result = await _result(request, done)
    if result is None:
        links = {"status": f"/v1/jobs/{task['id']}"}
        return json_response({"success": True, "task_id": task["id"], "status": done["status"], "links": links}, 202)
    return json_response(result, status=200)


async def _result(request: Request, task: dict[str, Any]) -> dict[str, Any] | None:
    """The run's full result (from its last ``workflow`` result event), or None while running."""
    if task["status"] not in TERMINAL:
        return None
    events = await gateway(request).tasks.queue.events(task["id"], types=(EVENT,))
    for event in reversed(events):
        data = event.data or {}
        if data.get("event") == "result":
            return dict(data["result"])
    error = task.get("error") or {"code": task["status"], "message": f"the run was {task['status']}"}
    return {
        "success": False,
        "output": None,
        "error": error,
        "logs": task.get("logs", []),
        "metadata": {"duration": task.get("duration_ms"), "startedAt": task.get("started_at")},
        "trace_spans": [],
        "total_duration": task.get("duration_ms"),
    }


async def _stream(request: Request, task_id: str) -> AsyncIterator[bytes]:
    events = await gateway(request).tasks.events(task_id)
    done_sent = False
    try:
        async for event in events:
            if event["type"] == EVENT:
                data = {k: v for k, v in event.items() if k not in ("type", "seq", "task_id", "created_at")}
                if data.get("event") == "result":
                    yield sse_event(_done(task_id, data["result"]))
                    done_sent = True
                else:
                    yield sse_event(data)
            elif event["type"] == "status" and event.get("status") in TERMINAL and not done_sent:
                yield sse_event(_done(task_id, await _result(request, event["task"]) or {}))
    except RunyardError as err:
        yield sse_error(err)
        return
    yield DONE


def _done(task_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """The final stream event; ``error`` only on failure (SDKs raise on an event with ``error``)."""
    out = {"event": "done", "task_id": task_id, **result}
    if out.get("error") is None:
        out.pop("error", None)
    return out


async def get_job(request: Request) -> Response:
    await check_task(request, request.path_params["task_id"])
    task = await gateway(request).tasks.get(request.path_params["task_id"])
    result = await _result(request, task) if task["status"] in TERMINAL else None
    name = (task.get("input") or {}).get("workflow")
    body: dict[str, Any] = {
        "success": task["status"] not in ("failed", "cancelled"),  # as the status says
        "taskId": task["id"],
        "task_id": task["id"],
        "status": task["status"],
        "metadata": {
            "createdAt": task["created_at"],
            "startedAt": task["started_at"],
            "completedAt": task["finished_at"],
            "duration": task["duration_ms"],
            "workflow": name,
            "version": (task.get("input") or {}).get("version"),
        },
        "output": result.get("output") if result else None,
        "error": (result.get("error") if result else None) or task.get("error"),
        "trace_spans": result.get("trace_spans") if result else None,
        "estimatedDuration": await _estimate_ms(request, name),
    }
    return json_response(body)


async def _estimate_ms(request: Request, name: str | None) -> int | None:
    """The workflow's estimated duration in whole milliseconds (as Sim's clients read it)."""
    estimate = await _service(request).estimated_duration(name) if name else None
    return None if estimate is None else round(estimate)


routes = [
    Route("/v1/workflows", save_workflow, methods=["POST"]),
    Route("/v1/workflows", list_workflows, methods=["GET"]),
    Route("/v1/workflows/validate", validate_workflow, methods=["POST"]),
    Route("/v1/workflows/{wid:path}/publish", publish_workflow, methods=["POST"]),
    Route("/v1/workflows/{wid:path}/validate", validate_stored, methods=["POST"]),
    Route("/v1/workflows/{wid:path}/aliases/{alias}", set_alias, methods=["POST", "PUT"]),
    Route("/v1/workflows/{wid:path}/status", workflow_status, methods=["GET"]),
    Route("/v1/workflows/{wid:path}/execute", execute_workflow, methods=["POST"]),
    Route("/v1/workflows/{wid:path}", get_workflow, methods=["GET"]),
    Route("/v1/jobs/{task_id}", get_job, methods=["GET"]),
]

# The API description (server/openapi): one declaration per route.
operations = [
    Operation(
        "POST",
        "/v1/workflows",
        "Save a workflow draft",
        "workflows",
        "saveWorkflow",
        body=ANY_OBJECT,
        response=ANY_OBJECT,
        status=201,
    ),
    Operation("GET", "/v1/workflows", "Workflows", "workflows", "listWorkflows", response=ANY_OBJECT),
    Operation(
        "POST",
        "/v1/workflows/validate",
        "Validate a workflow definition",
        "workflows",
        "validateWorkflow",
        body=ANY_OBJECT,
        response=ANY_OBJECT,
    ),
    Operation(
        "POST",
        "/v1/workflows/{wid:path}/publish",
        "Publish a workflow version",
        "workflows",
        "publishWorkflow",
        body=PublishBody,
        body_required=False,
        response=ANY_OBJECT,
        status=201,
    ),
    Operation(
        "POST",
        "/v1/workflows/{wid:path}/validate",
        "Validate a stored workflow",
        "workflows",
        "validateStoredWorkflow",
        response=ANY_OBJECT,
    ),
    Operation(
        "POST",
        "/v1/workflows/{wid:path}/aliases/{alias}",
        "Point an alias at a version",
        "workflows",
        "setWorkflowAlias",
        body=AliasBody,
        response=ANY_OBJECT,
    ),
    Operation(
        "PUT",
        "/v1/workflows/{wid:path}/aliases/{alias}",
        "Point an alias at a version",
        "workflows",
        "putWorkflowAlias",
        body=AliasBody,
        response=ANY_OBJECT,
    ),
    Operation(
        "GET",
        "/v1/workflows/{wid:path}/status",
        "A workflow's deployment status",
        "workflows",
        "getWorkflowStatus",
        response=ANY_OBJECT,
    ),
    Operation(
        "POST",
        "/v1/workflows/{wid:path}/execute",
        "Run a workflow",
        "workflows",
        "executeWorkflow",
        body=ExecuteBody,
        response=ANY_OBJECT,
        also=(202,),
        stream=True,
    ),
    Operation("GET", "/v1/workflows/{wid:path}", "A workflow", "workflows", "getWorkflow", response=ANY_OBJECT),
    Operation("GET", "/v1/jobs/{task_id}", "A workflow job", "workflows", "getJob", response=ANY_OBJECT),
]
