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

from ...errors import ConflictError, InvalidRequestError, NotFoundError, RequirementsNotMetError, RunyardError
from ...services.agents import AgentService
from ..access import check_chat, check_file_refs, check_session, check_task
from ..http import gateway, parse_object, read_body
from ..inferencesh_runs import InferenceshRuns, Run
from ..protocols import inferencesh as ish
from .audit import audit

PREFIX = "/inferencesh"
HEARTBEAT_S = 5.0
Handler = Callable[[Request, InferenceshRuns], Awaitable[Response]]


def ok(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps({"success": True, "data": data}), status_code=status, media_type="application/json")


def problem(err: RunyardError) -> Response:
    """``err`` as problem+json; unmet requirements are 412 with ``errors`` (the client's
    ``RequirementsNotMetError``)."""
    if isinstance(err, RequirementsNotMetError):
        errors = [{**e, "message": f"missing {e.get('type')} {e.get('key')!r}"} for e in err.errors]
        body = {
            "success": False,
            "type": f"https://runyard.dev/errors/{err.code}",
            "title": err.code,
            "detail": err.message,
            "status": 412,
            "error": {"code": err.code, "message": err.message},
            "errors": errors,
        }
        return Response(orjson.dumps(body), status_code=412, media_type="application/problem+json")
    body = {
        "success": False,
        "type": f"https://runyard.dev/errors/{err.code}",
        "title": err.code,
        "detail": err.message,
        "status": err.status or 500,
        "error": {"code": err.code, "message": err.message},
    }
    return Response(orjson.dumps(body), status_code=err.status or 500, media_type="application/problem+json")


def endpoint(handler: Handler, runs: InferenceshRuns) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` as a Starlette endpoint over ``runs``, its errors answered as problem+json."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request, runs)
        except RunyardError as err:
            return problem(err)

    wrapped.__name__ = handler.__name__
    return wrapped


async def body_of(request: Request) -> dict[str, Any]:
    raw = await read_body(request)
    return parse_object(raw) if raw.strip() else {}


# -- tasks ---------------------------------------------------------------------------------------


async def run_app(request: Request, runs: InferenceshRuns) -> Response:
    body = await body_of(request)
    app = body.get("app")
    if not isinstance(app, str):
        raise InvalidRequestError("'app' is required", code="invalid_request")
    session = body.get("session")
    inp = ish.rewrite_uploads(body.get("input") or {}, runs.uploads)
    await check_file_refs(request, inp)
    if isinstance(session, str) and session != "new":
        await check_session(request, session)
    task = await gateway(request).tasks.create(
        app,
        inp,
        setup=body.get("setup"),
        session=session,
        session_timeout=body.get("session_timeout"),
        pool=ish.pool_for(body.get("infra"), gateway(request).tasks.pools()),
        api_key_id=getattr(request.state, "api_key_id", None),
    )
    return ok(ish.task_dto(task))


async def get_task(request: Request, runs: InferenceshRuns) -> Response:
    await check_task(request, request.path_params["task_id"])
    return ok(ish.task_dto(await gateway(request).tasks.get(request.path_params["task_id"])))


async def cancel_task(request: Request, runs: InferenceshRuns) -> Response:
    await check_task(request, request.path_params["task_id"])
    return ok(ish.task_dto(await gateway(request).tasks.cancel(request.path_params["task_id"])))


async def stream_task(request: Request, runs: InferenceshRuns) -> Response:
    tasks, task_id = gateway(request).tasks, request.path_params["task_id"]
    await check_task(request, task_id)
    first = await tasks.get(task_id)

    async def lines() -> AsyncIterator[bytes]:
        task, last = first, None
        while True:
            dto = ish.task_dto(task)
            key = (dto["status"], orjson.dumps(dto["output"]))
            if key != last:
                yield orjson.dumps(dto) + b"\n"
                last = key
            else:
                yield b'{"type":"heartbeat"}\n'
            if dto["status"] in ish.TERMINAL:
                return
            task = await tasks.wait(task_id, HEARTBEAT_S)

    return StreamingResponse(lines(), media_type="application/x-ndjson", headers={"Cache-Control": "no-cache"})


# -- files ---------------------------------------------------------------------------------------


async def create_files(request: Request, runs: InferenceshRuns) -> Response:
    body = await body_of(request)
    items = body.get("files")
    if not isinstance(items, list) or not items:
        raise InvalidRequestError("'files' must be a non-empty list", code="invalid_request")
    out = []
    base = str(request.base_url).rstrip("/")
    for item in items:
        item = item if isinstance(item, dict) else {}
        token = secrets.token_urlsafe(16)
        runs.uploads[token] = {"filename": item.get("filename"), "content_type": item.get("content_type")}
        out.append(
            {
                "id": token,
                "uri": f"{ish.UPLOAD_SCHEME}{token}",
                "upload_url": f"{base}{PREFIX}/uploads/{token}",
                "filename": item.get("filename"),
                "content_type": item.get("content_type"),
                "size": item.get("size"),
            }
        )
    return ok(out)


async def put_upload(request: Request, runs: InferenceshRuns) -> Response:
    entry = runs.uploads.get(request.path_params["token"])
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


def _start(
    request: Request,
    runs: InferenceshRuns,
    chat_id: str,
    work: Callable[[Any], Awaitable[dict[str, Any]]],
    *,
    new: bool,
) -> Run:
    """Run ``work`` (an agent step, given the delta emitter) on the chat's run, logging its events."""
    agents = _agents(request)

    async def go(run: Run) -> None:
        async def emit(event: dict[str, Any]) -> None:
            if event.get("type") == "delta":
                run.seq += 1
                data = {"resource_id": f"{chat_id}-live", "delta": {"response": event["content"]}, "seq": run.seq}
                run.push("delta", data)

        try:
            chat = await work(emit)
        except RunyardError as err:
            chat = await agents.get_chat(chat_id)
            chat = {**chat, "status": "failed", "error": err.to_dict()["error"]}
        run.push("chat_messages", ish.chat_message(chat))
        if chat["status"] != "awaiting_tool_result":
            run.push("chats", ish.chat_dto(chat))
            run.closed = True

    return runs.start(chat_id, go, new=new)


async def agents_run(request: Request, runs: InferenceshRuns) -> Response:
    body = await body_of(request)
    svc, key = _agents(request), getattr(request.state, "api_key_id", None)
    chat_id = body.get("chat_id")
    if not chat_id:
        if isinstance(body.get("agent"), str):
            chat = await svc.create_chat(body["agent"], api_key_id=key)
        elif isinstance(body.get("agent_config"), dict):
            gw = gateway(request)
            config = ish.agent_config(
                body["agent_config"],
                app_schema=lambda ref: gw.apps.resolve(ref).input_schema(),
                web_search=svc.chats.web_search,
                image_model=gw.config.agents.image_model,
            )
            chat = await svc.create_chat(config, api_key_id=key)
        else:
            raise InvalidRequestError("send 'agent' (a template ref) or 'agent_config'", code="invalid_request")
        chat_id = chat["id"]
    else:
        await _chat(request, chat_id)
    await runs.settle(chat_id)
    inp = body.get("input") or {}
    text = str(inp.get("text") or "")
    files = [
        ish.rewrite_uploads(a.get("uri"), runs.uploads) for a in inp.get("attachments") or [] if isinstance(a, dict)
    ]
    await check_file_refs(request, files)
    _start(
        request,
        runs,
        chat_id,
        lambda emit: svc.send_message(chat_id, text, files=files or None, emit=emit, api_key_id=key),
        new=True,
    )
    user = {"id": f"{chat_id}-u", "chat_id": chat_id, "role": "user", "content": [{"type": "text", "text": text}]}
    assistant = {"id": f"{chat_id}-live", "chat_id": chat_id, "role": "assistant", "status": "pending"}
    return ok({"user_message": user, "assistant_message": assistant})


async def chat_stream(request: Request, runs: InferenceshRuns) -> Response:
    chat_id = request.path_params["chat_id"]
    chat = await _chat(request, chat_id)
    run = runs.get(chat_id)

    async def lines() -> AsyncIterator[bytes]:
        if run is None:
            yield orjson.dumps({"event": "chats", "data": ish.chat_dto(chat)}) + b"\n"
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


async def get_chat(request: Request, runs: InferenceshRuns) -> Response:
    chat_id = request.path_params["chat_id"]
    await _chat(request, chat_id)
    await runs.settle(chat_id, timeout=60)
    return ok(ish.chat_dto(await _agents(request).get_chat(chat_id)))


async def _tool_action(
    request: Request, runs: InferenceshRuns, make: Callable[[str, str, Any], Awaitable[dict[str, Any]]]
) -> Response:
    chat_id, call_id = ish.split_invocation(request.path_params["inv_id"])
    svc = _agents(request)
    svc._call(await _chat(request, chat_id), call_id)  # 404 before anything starts
    await runs.settle(chat_id)
    _start(request, runs, chat_id, lambda emit: make(chat_id, call_id, emit), new=False)
    return ok(None)


async def tool_result(request: Request, runs: InferenceshRuns) -> Response:
    body = await body_of(request)
    result = body.get("result")
    svc, key = _agents(request), getattr(request.state, "api_key_id", None)
    chat_id, call_id = ish.split_invocation(request.path_params["inv_id"])
    call = svc._call(await _chat(request, chat_id), call_id)
    if call["status"] == "done":
        raise ConflictError(f"tool call {call_id} already has a result", code="tool_result_already_submitted")
    if call["status"] not in ("awaiting_result", "awaiting_approval"):
        raise ConflictError(
            f"tool call {call_id} is {call['status']}, not awaiting a result", code="tool_call_not_awaiting"
        )
    return await _tool_action(
        request, runs, lambda c, i, emit: svc.submit_tool_result(c, i, result, emit=emit, api_key_id=key)
    )


async def _audit_decision(request: Request, approved: bool, reason: Any = None) -> None:
    chat_id, call_id = ish.split_invocation(request.path_params["inv_id"])
    call = _agents(request)._call(await _chat(request, chat_id), call_id)  # 404 before it is recorded
    if call["status"] != "awaiting_approval":
        return
    details = {"chat_id": chat_id, "call_id": call_id, "approved": approved, "reason": reason}
    await audit(request, "approval.given", target=call.get("name"), details=details)


async def tool_approve(request: Request, runs: InferenceshRuns) -> Response:
    svc, key = _agents(request), getattr(request.state, "api_key_id", None)
    await _audit_decision(request, True)
    return await _tool_action(request, runs, lambda c, i, emit: svc.decide(c, i, True, emit=emit, api_key_id=key))


async def tool_reject(request: Request, runs: InferenceshRuns) -> Response:
    body = await body_of(request)
    svc, key = _agents(request), getattr(request.state, "api_key_id", None)
    reason = body.get("reason")
    await _audit_decision(request, False, reason)
    return await _tool_action(
        request, runs, lambda c, i, emit: svc.decide(c, i, False, reason=reason, emit=emit, api_key_id=key)
    )


def routes(runs: InferenceshRuns) -> list[Route]:
    """The adapter's routes over ``runs`` (one per app)."""
    return [
        Route(f"{PREFIX}/apps/run", endpoint(run_app, runs), methods=["POST"]),
        Route(f"{PREFIX}/tasks/{{task_id}}", endpoint(get_task, runs), methods=["GET"]),
        Route(f"{PREFIX}/tasks/{{task_id}}/stream", endpoint(stream_task, runs), methods=["GET"]),
        Route(f"{PREFIX}/tasks/{{task_id}}/cancel", endpoint(cancel_task, runs), methods=["POST"]),
        Route(f"{PREFIX}/files", endpoint(create_files, runs), methods=["POST"]),
        Route(f"{PREFIX}/uploads/{{token}}", endpoint(put_upload, runs), methods=["PUT"]),
        Route(f"{PREFIX}/agents/run", endpoint(agents_run, runs), methods=["POST"]),
        Route(f"{PREFIX}/chats/{{chat_id}}", endpoint(get_chat, runs), methods=["GET"]),
        Route(f"{PREFIX}/chats/{{chat_id}}/stream", endpoint(chat_stream, runs), methods=["GET"]),
        Route(f"{PREFIX}/tools/{{inv_id}}", endpoint(tool_result, runs), methods=["POST"]),
        Route(f"{PREFIX}/tools/{{inv_id}}/invoke", endpoint(tool_approve, runs), methods=["POST"]),
        Route(f"{PREFIX}/tools/{{inv_id}}/reject", endpoint(tool_reject, runs), methods=["POST"]),
    ]
