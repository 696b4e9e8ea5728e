"""Apps, runs, tasks and sessions: ``/v1/apps``, ``/v1/runs``, ``/v1/tasks``, ``/v1/sessions``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import InvalidRequestError, RunyardError
from ...services.limits import ASYNC, SYNC
from ...services.tasks import TaskService
from ..access import check_file_refs, check_session, check_task, scope_workspace
from ..http import (
    DONE,
    EventStream,
    gateway,
    idempotency_key,
    idempotent,
    json_response,
    parse_object,
    read_body,
    sse_error,
    sse_event,
    validate,
)
from ..openapi import ANY_OBJECT, SSE, Operation, Param
from ..ratelimit import enforce

MAX_WAIT_S = 60.0
STATUSES = ("queued", "processing", "completed", "failed", "cancelled")


async def list_apps(request: Request) -> Response:
    registry = gateway(request).apps
    data = [{**d.describe(), "aliases": registry.aliases(d.name)} for d in registry.all()]
    return json_response({"object": "list", "data": data})


async def get_app(request: Request) -> Response:
    registry = gateway(request).apps
    ref = f"{request.path_params['ns']}/{request.path_params['name']}"
    definition = registry.resolve(ref)
    return json_response({**definition.describe(), "aliases": registry.aliases(definition.name)})


async def app_versions(request: Request) -> Response:
    registry = gateway(request).apps
    name = f"{request.path_params['ns']}/{request.path_params['name']}"
    versions = registry.versions(name)
    data = [{"id": d.ref, "version": d.version, "description": d.description} for d in versions]
    return json_response({"object": "list", "name": name, "aliases": registry.aliases(name), "data": data})


class RunBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"app": "runyard/chat", "input": {"messages": "hi", "model": "dummy::echo"}}]},
    )

    app: str = Field(min_length=1, max_length=255)
    input: dict[str, Any] = Field(default_factory=dict)
    setup: dict[str, Any] | None = None
    session: str | None = Field(default=None, max_length=64)
    session_timeout: int | None = None
    webhook: str | None = Field(default=None, max_length=2048)
    pool: str | None = Field(default=None, max_length=64)
    resource_config_id: str | None = Field(default=None, max_length=64, description="SpeedPix name for pool")
    wait: float | None = Field(default=None, ge=0, description=f"hold the request up to N s (max {MAX_WAIT_S:g})")


async def create_run(request: Request) -> Response:
    raw = await read_body(request)
    data = parse_object(raw)
    key = idempotency_key(request, data)
    body = validate(RunBody, data)
    await enforce(request, SYNC if body.wait else ASYNC)  # a run that waits is a sync call
    await check_file_refs(request, body.input)  # no pulling another workspace's file into a run
    if body.session and body.session != "new":
        await check_session(request, body.session)
    service = gateway(request).tasks

    async def produce() -> Response:
        task = await service.create(
            body.app,
            body.input,
            setup=body.setup,
            session=body.session,
            session_timeout=body.session_timeout,
            webhook=body.webhook,
            pool=body.pool or body.resource_config_id,
            api_key_id=request.state.api_key_id,
        )
        return json_response(task, status=201)

    response = await idempotent(request, key, raw, produce)
    if body.wait and response.status_code == 201:
        task_id = _task_id_of(response)
        task = await service.wait(task_id, min(body.wait, MAX_WAIT_S))
        return json_response(task, status=200 if task["status"] in ("completed", "failed", "cancelled") else 202)
    return response


def _task_id_of(response: Response) -> str:
    import orjson

    return str(orjson.loads(bytes(response.body))["id"])


async def get_task(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    await check_task(request, task_id)
    return json_response(await gateway(request).tasks.get(task_id))


async def list_tasks(request: Request) -> Response:
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidRequestError(f"status must be one of {', '.join(STATUSES)}", code="invalid_status")
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise InvalidRequestError("limit must be an integer", code="invalid_limit") from None
    if not 1 <= limit <= 200:
        raise InvalidRequestError("limit must be between 1 and 200", code="invalid_limit")
    page = await gateway(request).tasks.list_tasks(
        app=q.get("app"), status=status, limit=limit, cursor=q.get("cursor"), workspace=scope_workspace(request)
    )
    return json_response({"object": "list", **page})


async def cancel_task(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    await check_task(request, task_id)
    return json_response(await gateway(request).tasks.cancel(task_id))


async def task_events(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    await check_task(request, task_id)
    events = await gateway(request).tasks.events(task_id)
    return EventStream(_sse(events))


async def _sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield sse_event(event)
    except RunyardError as err:
        yield sse_error(err)
        return
    yield DONE


async def delete_session(request: Request) -> Response:
    service: TaskService = gateway(request).tasks
    session_id = request.path_params["session_id"]
    await check_session(request, session_id)
    return json_response(await service.end_session(session_id))


routes = [
    Route("/v1/apps", list_apps, methods=["GET"]),
    Route("/v1/apps/{ns}/{name}/versions", app_versions, methods=["GET"]),
    Route("/v1/apps/{ns}/{name}", get_app, methods=["GET"]),
    Route("/v1/runs", create_run, methods=["POST"]),
    Route("/v1/tasks", list_tasks, methods=["GET"]),
    Route("/v1/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/v1/tasks/{task_id}/cancel", cancel_task, methods=["POST"]),
    Route("/v1/tasks/{task_id}/events", task_events, methods=["GET"]),
    Route("/v1/sessions/{session_id}", delete_session, methods=["DELETE"]),
]

# The API description (server/openapi): one declaration per route.
_TASK_LINKS = {
    "GetTask": {"operationId": "getTask", "parameters": {"task_id": "$response.body#/id"}},
    "CancelTask": {"operationId": "cancelTask", "parameters": {"task_id": "$response.body#/id"}},
    "TaskEvents": {"operationId": "getTaskEvents", "parameters": {"task_id": "$response.body#/id"}},
}
operations = [
    Operation("GET", "/v1/apps", "Registered apps", "tasks", "listApps", response=ANY_OBJECT),
    Operation(
        "GET", "/v1/apps/{ns}/{name}/versions", "An app's versions", "tasks", "getAppVersions", response=ANY_OBJECT
    ),
    Operation("GET", "/v1/apps/{ns}/{name}", "An app", "tasks", "getApp", response=ANY_OBJECT),
    Operation(
        "POST",
        "/v1/runs",
        "Run an app (a task)",
        "tasks",
        "createRun",
        body=RunBody,
        response=ANY_OBJECT,
        status=201,
        links=_TASK_LINKS,
        description="With `wait`: 200 when finished, else 202.",
    ),
    Operation(
        "GET",
        "/v1/tasks",
        "Tasks, newest first",
        "tasks",
        "listTasks",
        response=ANY_OBJECT,
        params=(
            Param("status", schema={"enum": list(STATUSES)}),
            Param("limit", schema={"type": "integer", "minimum": 1, "maximum": 200}),
            Param("app"),
            Param("cursor"),
        ),
    ),
    Operation("GET", "/v1/tasks/{task_id}", "A task", "tasks", "getTask", response=ANY_OBJECT),
    Operation("POST", "/v1/tasks/{task_id}/cancel", "Cancel a task", "tasks", "cancelTask", response=ANY_OBJECT),
    Operation(
        "GET",
        "/v1/tasks/{task_id}/events",
        "A task's events (SSE)",
        "tasks",
        "getTaskEvents",
        response=SSE,
        response_media="text/event-stream",
    ),
    Operation("DELETE", "/v1/sessions/{session_id}", "End a session", "tasks", "deleteSession", response=ANY_OBJECT),
]
