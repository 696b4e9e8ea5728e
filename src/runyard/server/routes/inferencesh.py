"""The ``inferencesh`` client's wire protocol, under ``/inferencesh`` (pass
``base_url="http://HOST:PORT/inferencesh"``): apps/run, tasks (get, NDJSON stream, cancel),
files (POST /files + PUT upload_url) and agents (/agents/run, NDJSON chat stream, /tools/{id}),
over the same task, file and agent services. Every answer is ``{"success": true, "data": ...}``;
errors are problem+json with ``error.code``. See ../shared/protocols/inferencesh.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ...errors import InvalidRequestError, NotFoundError, RunyardError
from ...services.agents import AgentService
from ..access import check_chat, check_file_refs, check_session, check_task
from ..http import gateway, parse_object, read_body

PREFIX = "/inferencesh"
STATUS = {"queued": 2, "processing": 7, "completed": 10, "failed": 11, "cancelled": 12}
TERMINAL = {10, 11, 12, 13}
HEARTBEAT_S = 5.0
Handler = Callable[[Request], Awaitable[Response]]


def ok(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps({"success": True, "data": data}), status_code=status, media_type="application/json")


def problem(err: RunyardError) -> Response:
    body = {
        "success": False,
        "type": f"https://runyard.dev/errors/{err.code}",
        "title": err.code,
        "detail": err.message,
        "status": err.status or 500,
        "error": {"code": err.code, "message": err.message},
    }
    return Response(orjson.dumps(body), status_code=err.status or 500, media_type="application/problem+json")


def envelope(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except RunyardError as err:
            return problem(err)

    return wrapped


async def body_of(request: Request) -> dict[str, Any]:
    raw = await read_body(request)
    return parse_object(raw) if raw.strip() else {}


class State:
    """Per-app adapter state: pending uploads, and the event log of each chat's current run."""

    def __init__(self) -> None:
        self.uploads: dict[str, dict[str, Any]] = {}  # token -> {filename, content_type, file_id}
        self.runs: dict[str, Run] = {}


class Run:
    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.changed = asyncio.Event()
        self.closed = False  # a terminal ``chats`` event was written
        self.task: asyncio.Task[None] | None = None
        self.seq = 0

    def push(self, event: str, data: Any) -> None:
        self.events.append(orjson.dumps({"event": event, "data": data}) + b"\n")
        self.changed.set()


def state(request: Request) -> State:
    st: State | None = getattr(request.app.state, "inferencesh", None)
    if st is None:
        st = request.app.state.inferencesh = State()
    return st


# -- tasks ---------------------------------------------------------------------------------------


def task_dto(task: dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": task["id"],
        "status": STATUS.get(task["status"], 0),
        "input": task.get("input"),
        "output": task.get("output"),
        "logs": task.get("logs") or [],
        "error": (task.get("error") or {}).get("message") if isinstance(task.get("error"), dict) else task.get("error"),
        "created_at": task.get("created_at"),
        "updated_at": task.get("finished_at") or task.get("started_at") or task.get("created_at"),
    }
    if task.get("session_id"):
        out["session_id"] = task["session_id"]
    return out


def _rewrite_uploads(value: Any, uploads: dict[str, dict[str, Any]]) -> Any:
    if isinstance(value, str) and value.startswith("inferencesh-upload://"):
        entry = uploads.get(value.removeprefix("inferencesh-upload://"))
        if entry and entry.get("file_id"):
            return f"runyard://files/{entry['file_id']}"
    if isinstance(value, dict):
        return {k: _rewrite_uploads(v, uploads) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_uploads(v, uploads) for v in value]
    return value


@envelope
async def run_app(request: Request) -> Response:
    body = await body_of(request)
    app = body.get("app")
    if not isinstance(app, str):
        raise InvalidRequestError("'app' is required", code="invalid_request")
    session = body.get("session")
    inp = _rewrite_uploads(body.get("input") or {}, state(request).uploads)
    await check_file_refs(request, inp)
    if isinstance(session, str) and session != "new":
        await check_session(request, session)
    task = await gateway(request).tasks.create(
        app,
        inp,
        setup=body.get("setup"),
        session=session,
        session_timeout=body.get("session_timeout"),
        api_key_id=getattr(request.state, "api_key_id", None),
    )
    return ok(task_dto(task))


@envelope
async def get_task(request: Request) -> Response:
    await check_task(request, request.path_params["task_id"])
    return ok(task_dto(await gateway(request).tasks.get(request.path_params["task_id"])))


@envelope
async def cancel_task(request: Request) -> Response:
    await check_task(request, request.path_params["task_id"])
    return ok(task_dto(await gateway(request).tasks.cancel(request.path_params["task_id"])))


@envelope
async def stream_task(request: Request) -> Response:
    tasks, task_id = gateway(request).tasks, request.path_params["task_id"]
    await check_task(request, task_id)
    first = await tasks.get(task_id)

    async def lines() -> AsyncIterator[bytes]:
        task, last = first, None
        while True:
            dto = task_dto(task)
            key = (dto["status"], orjson.dumps(dto["output"]))
            if key != last:
                yield orjson.dumps(dto) + b"\n"
                last = key
            else:
                yield b'{"type":"heartbeat"}\n'
            if dto["status"] in TERMINAL:
                return
            task = await tasks.wait(task_id, HEARTBEAT_S)

    return StreamingResponse(lines(), media_type="application/x-ndjson", headers={"Cache-Control": "no-cache"})


# -- files ---------------------------------------------------------------------------------------


@envelope
async def create_files(request: Request) -> Response:
    body = await body_of(request)
    items = body.get("files")
    if not isinstance(items, list) or not items:
        raise InvalidRequestError("'files' must be a non-empty list", code="invalid_request")
    st, out = state(request), []
    base = str(request.base_url).rstrip("/")
    for item in items:
        item = item if isinstance(item, dict) else {}
        token = secrets.token_urlsafe(16)
        st.uploads[token] = {"filename": item.get("filename"), "content_type": item.get("content_type")}
        out.append(
            {
                "id": token,
                "uri": f"inferencesh-upload://{token}",
                "upload_url": f"{base}{PREFIX}/uploads/{token}",
                "filename": item.get("filename"),
                "content_type": item.get("content_type"),
                "size": item.get("size"),
            }
        )
    return ok(out)


@envelope
async def put_upload(request: Request) -> Response:
    entry = state(request).uploads.get(request.path_params["token"])
    if entry is None:
        raise NotFoundError("unknown upload", code="upload_not_found")
    record = await gateway(request).files.put(
        await read_body(request),
        entry["filename"],
        entry["content_type"] or request.headers.get("content-type"),
        api_key_id=getattr(request.state, "api_key_id", None),
    )
    entry["file_id"] = record.id
    return ok({"id": record.id, "uri": record.uri})


# -- agents --------------------------------------------------------------------------------------


def _agents(request: Request) -> AgentService:
    svc: AgentService = gateway(request).agents
    return svc


async def _chat(request: Request, chat_id: str) -> dict[str, Any]:
    """The chat, if the caller may see it (404 ``chat_not_found`` otherwise)."""
    chat = await _agents(request).get_chat(chat_id)
    await check_chat(request, chat)
    return chat


def agent_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """An inference.sh ``agent_config`` as ours."""
    core = cfg.get("core_app") or {}
    tools = []
    for t in cfg.get("tools") or []:
        if not isinstance(t, dict):
            continue
        kind = t.get("type", "client")
        spec: dict[str, Any] = {
            "name": t["name"],
            "description": t.get("description") or "",
            "require_approval": bool(t.get("require_approval")),
        }
        if kind == "app":
            app = t.get("app") or {}
            spec.update(type="app", app=app.get("ref"), setup=app.get("setup") or {}, input=app.get("input") or {})
        else:
            spec["type"] = "client"
        spec["parameters"] = ((t.get(kind) or {}).get("input_schema")) or {"type": "object", "properties": {}}
        tools.append(spec)
    internal = cfg.get("internal_tools") or {}
    return {
        "model": cfg.get("model") or core.get("ref"),
        "system_prompt": cfg.get("system_prompt") or "",
        "tools": tools,
        "internal_tools": {k: bool(internal.get(k)) for k in ("plan", "memory", "code_execution") if k in internal},
        "skills": [s for s in cfg.get("skills") or [] if isinstance(s, dict) and "name" in s],
    }


def _inv_id(chat_id: str, call: dict[str, Any]) -> str:
    return f"{chat_id}~{call['step']}~{call['id']}"


def _message(chat: dict[str, Any]) -> dict[str, Any]:
    last = next((m for m in reversed(chat["messages"]) if m["role"] == "assistant"), None)
    text = last.get("content") if last else None
    invocations = [
        {
            "id": _inv_id(chat["id"], c),
            "type": c["type"] if c["type"] in ("client", "app", "agent", "webhook") else "internal",
            "status": {"awaiting_result": "awaiting_input", "awaiting_approval": "awaiting_approval"}.get(
                c["status"], "completed" if c["status"] == "done" else c["status"]
            ),
            "function": {"name": c["name"], "arguments": c["arguments"]},
            "result": c.get("result"),
        }
        for c in chat["tool_calls"]
        if c["step"] == len(chat["steps"]) - 1
    ]
    status = "ready" if chat["status"] in ("idle", "max_steps_reached") else "pending"
    return {
        "id": f"{chat['id']}-m{len(chat['messages'])}",
        "chat_id": chat["id"],
        "role": "assistant",
        "status": status,
        "content": [{"type": "text", "text": text or ""}],
        "tool_invocations": invocations,
    }


def _chat_dto(chat: dict[str, Any]) -> dict[str, Any]:
    state_of = {
        "idle": "completed",
        "awaiting_tool_result": "working",
        "awaiting_approval": "input_required",
        "max_steps_reached": "failed",
        "failed": "failed",
    }
    last = next((m for m in reversed(chat["messages"]) if m["role"] == "assistant"), None)
    return {
        "id": chat["id"],
        "status": chat["status"],
        "agent": chat.get("agent"),
        "active_run": {"state": state_of.get(chat["status"], "completed")},
        "output": last.get("content") if last else None,
        "messages": chat["messages"],
        "pending_interrupts": [
            {
                "id": f"int-{_inv_id(chat['id'], c)}",
                "reason": "tool_approval",
                "status": "pending",
                "chat_id": chat["id"],
                "resource_id": _inv_id(chat["id"], c),
                "meta": {
                    "tool_invocation_id": _inv_id(chat["id"], c),
                    "tool_name": c["name"],
                    "arguments": c["arguments"],
                },
            }
            for c in chat["tool_calls"]
            if c["status"] == "awaiting_approval"
        ],
    }


def _start(request: Request, chat_id: str, work: Callable[[Any], Awaitable[dict[str, Any]]], *, new: bool) -> Run:
    st = state(request)
    run = st.runs.get(chat_id)
    if new or run is None or run.closed:
        run = st.runs[chat_id] = Run()
    current = run

    async def emit(event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "delta":
            current.seq += 1
            data = {"resource_id": f"{chat_id}-live", "delta": {"response": event["content"]}, "seq": current.seq}
            current.push("delta", data)

    async def go() -> None:
        try:
            chat = await work(emit)
        except RunyardError as err:
            chat = await _agents(request).get_chat(chat_id)
            chat = {**chat, "status": "failed", "error": err.to_dict()["error"]}
        current.push("chat_messages", _message(chat))
        if chat["status"] != "awaiting_tool_result":
            current.push("chats", _chat_dto(chat))
            current.closed = True

    current.task = asyncio.create_task(go())
    return current


@envelope
async def agents_run(request: Request) -> Response:
    body = await body_of(request)
    svc, key = _agents(request), getattr(request.state, "api_key_id", None)
    chat_id = body.get("chat_id")
    if not chat_id:
        if isinstance(body.get("agent"), str):
            chat = await svc.create_chat(body["agent"], api_key_id=key)
        elif isinstance(body.get("agent_config"), dict):
            chat = await svc.create_chat(agent_config(body["agent_config"]), api_key_id=key)
        else:
            raise InvalidRequestError("send 'agent' (a template ref) or 'agent_config'", code="invalid_request")
        chat_id = chat["id"]
    else:
        await _chat(request, chat_id)
    run = state(request).runs.get(chat_id)
    if run is not None and run.task is not None and not run.task.done():
        await run.task
    inp = body.get("input") or {}
    text = str(inp.get("text") or "")
    files = [
        _rewrite_uploads(a.get("uri"), state(request).uploads)
        for a in inp.get("attachments") or []
        if isinstance(a, dict)
    ]
    await check_file_refs(request, files)
    _start(
        request,
        chat_id,
        lambda emit: svc.send_message(chat_id, text, files=files or None, emit=emit, api_key_id=key),
        new=True,
    )
    user = {"id": f"{chat_id}-u", "chat_id": chat_id, "role": "user", "content": [{"type": "text", "text": text}]}
    assistant = {"id": f"{chat_id}-live", "chat_id": chat_id, "role": "assistant", "status": "pending"}
    return ok({"user_message": user, "assistant_message": assistant})


@envelope
async def chat_stream(request: Request) -> Response:
    chat_id = request.path_params["chat_id"]
    chat = await _chat(request, chat_id)
    run = state(request).runs.get(chat_id)

    async def lines() -> AsyncIterator[bytes]:
        if run is None:
            yield orjson.dumps({"event": "chats", "data": _chat_dto(chat)}) + b"\n"
            return
        sent = 0
        while True:
            run.changed.clear()
            while sent < len(run.events):
                yield run.events[sent]
                sent += 1
            if run.closed and sent >= len(run.events):
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(run.changed.wait(), HEARTBEAT_S)
            if not run.changed.is_set():
                yield b'{"type":"heartbeat"}\n'

    return StreamingResponse(lines(), media_type="application/x-ndjson", headers={"Cache-Control": "no-cache"})


@envelope
async def get_chat(request: Request) -> Response:
    chat_id = request.path_params["chat_id"]
    await _chat(request, chat_id)
    run = state(request).runs.get(chat_id)
    if run is not None and run.task is not None and not run.task.done():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(run.task), 60)
    return ok(_chat_dto(await _agents(request).get_chat(chat_id)))


def _split(inv_id: str) -> tuple[str, str]:
    parts = inv_id.split("~", 2)
    if len(parts) != 3:
        raise NotFoundError(f"unknown tool invocation {inv_id!r}", code="unknown_tool_call")
    return parts[0], parts[2]


async def _tool_action(request: Request, make: Callable[[str, str, Any], Awaitable[dict[str, Any]]]) -> Response:
    chat_id, call_id = _split(request.path_params["inv_id"])
    svc = _agents(request)
    svc._call(await _chat(request, chat_id), call_id)  # 404 before anything starts
    run = state(request).runs.get(chat_id)
    if run is not None and run.task is not None and not run.task.done():
        await run.task
    _start(request, chat_id, lambda emit: make(chat_id, call_id, emit), new=False)
    return ok(None)


@envelope
async def tool_result(request: Request) -> Response:
    body = await body_of(request)
    result = body.get("result")
    svc, key = _agents(request), getattr(request.state, "api_key_id", None)
    chat_id, call_id = _split(request.path_params["inv_id"])
    call = svc._call(await _chat(request, chat_id), call_id)
    if call["status"] == "done":
        from ...errors import ConflictError

        raise ConflictError(f"tool call {call_id} already has a result", code="tool_result_already_submitted")
    return await _tool_action(
        request, lambda c, i, emit: svc.submit_tool_result(c, i, result, emit=emit, api_key_id=key)
    )


@envelope
async def tool_approve(request: Request) -> Response:
    svc, key = _agents(request), getattr(request.state, "api_key_id", None)
    return await _tool_action(request, lambda c, i, emit: svc.decide(c, i, True, emit=emit, api_key_id=key))


@envelope
async def tool_reject(request: Request) -> Response:
    body = await body_of(request)
    svc, key = _agents(request), getattr(request.state, "api_key_id", None)
    reason = body.get("reason")
    return await _tool_action(
        request, lambda c, i, emit: svc.decide(c, i, False, reason=reason, emit=emit, api_key_id=key)
    )


routes = [
    Route(f"{PREFIX}/apps/run", run_app, methods=["POST"]),
    Route(f"{PREFIX}/tasks/{{task_id}}", get_task, methods=["GET"]),
    Route(f"{PREFIX}/tasks/{{task_id}}/stream", stream_task, methods=["GET"]),
    Route(f"{PREFIX}/tasks/{{task_id}}/cancel", cancel_task, methods=["POST"]),
    Route(f"{PREFIX}/files", create_files, methods=["POST"]),
    Route(f"{PREFIX}/uploads/{{token}}", put_upload, methods=["PUT"]),
    Route(f"{PREFIX}/agents/run", agents_run, methods=["POST"]),
    Route(f"{PREFIX}/chats/{{chat_id}}", get_chat, methods=["GET"]),
    Route(f"{PREFIX}/chats/{{chat_id}}/stream", chat_stream, methods=["GET"]),
    Route(f"{PREFIX}/tools/{{inv_id}}", tool_result, methods=["POST"]),
    Route(f"{PREFIX}/tools/{{inv_id}}/invoke", tool_approve, methods=["POST"]),
    Route(f"{PREFIX}/tools/{{inv_id}}/reject", tool_reject, methods=["POST"]),
]
