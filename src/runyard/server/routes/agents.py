"""Agents and chats: ``/v1/agents`` (templates) and ``/v1/chats`` (the agent loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import InvalidRequestError, RunyardError
from ...services.agents import AgentService, Emit
from ..access import check_chat, check_file_refs, scope_workspace
from ..http import DONE, EventStream, gateway, json_response, read_body, sse_error, sse_event
from ..openapi import ANY_OBJECT, SSE, Operation
from .audit import audit

_running: set[asyncio.Task[None]] = set()


def _agents(request: Request) -> AgentService:
    svc: AgentService = gateway(request).agents
    return svc


async def _body(request: Request) -> dict[str, Any]:
    raw = await read_body(request)
    if not raw.strip():
        return {}
    from ..http import parse_object

    return parse_object(raw)


def _ref(request: Request) -> str:
    return f"{request.path_params['ns']}/{request.path_params['name']}"


def _key(request: Request) -> str | None:
    return getattr(request.state, "api_key_id", None)


async def _chat(request: Request) -> dict[str, Any]:
    """The path's chat, if the caller may see it (404 ``chat_not_found`` otherwise)."""
    chat = await _agents(request).get_chat(request.path_params["chat_id"])
    await check_chat(request, chat)
    return chat


async def create_agent(request: Request) -> Response:
    body = await _body(request)
    config = body.get("config", body.get("yaml"))
    name = body.get("name")
    if config is None and "model" in body:  # a flat {name, model, ...} body
        config = {k: v for k, v in body.items() if k != "name"}
    if not isinstance(name, str) or config is None:
        raise InvalidRequestError("send {name, config} (or {name, yaml})", code="invalid_agent_config")
    made = await _agents(request).create_template(
        name, config, viewer=scope_workspace(request), created_by=_key(request)
    )
    await audit(request, "agent.published", target=made["id"], details={"version": made["version"]})
    return json_response(made, status=201)


async def get_agent(request: Request) -> Response:
    return json_response(await _agents(request).get_template(_ref(request), viewer=scope_workspace(request)))


async def agent_versions(request: Request) -> Response:
    data = await _agents(request).list_versions(_ref(request), viewer=scope_workspace(request))
    return json_response({"object": "list", "data": data})


async def create_template_chat(request: Request) -> Response:
    body = await _body(request)
    chat = await _agents(request).create_chat(_ref(request), user=body.get("user"), api_key_id=_key(request))
    return json_response(chat, status=201)


async def create_chat(request: Request) -> Response:
    body = await _body(request)
    agent = body.get("agent")
    if not isinstance(agent, (str, dict)):
        raise InvalidRequestError("'agent' must be a template ref or a config object", code="invalid_agent_config")
    chat = await _agents(request).create_chat(agent, user=body.get("user"), api_key_id=_key(request))
    return json_response(chat, status=201)


async def get_chat(request: Request) -> Response:
    return json_response(await _chat(request))


async def reset_chat(request: Request) -> Response:
    await _chat(request)
    return json_response(await _agents(request).reset(request.path_params["chat_id"]))


async def _answer(body: dict[str, Any], run: Callable[[Emit | None], Awaitable[dict[str, Any]]]) -> Response:
    if not body.get("stream"):
        return json_response(await run(None))
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def emit(event: dict[str, Any]) -> None:
        await queue.put(sse_event(event))

    async def work() -> None:
        try:
            chat = await run(emit)
            await queue.put(sse_event({"type": "done", "chat": chat}))
        except RunyardError as err:
            await queue.put(sse_error(err))
        finally:
            await queue.put(None)

    task = asyncio.create_task(work())  # the chat finishes and is saved even if the caller leaves
    _running.add(task)
    task.add_done_callback(_running.discard)

    async def events() -> AsyncIterator[bytes]:
        while (item := await queue.get()) is not None:
            yield item
        yield DONE

    return EventStream(events())


async def send_message(request: Request) -> Response:
    body = await _body(request)
    text = body.get("text", body.get("content"))
    if not isinstance(text, str):
        raise InvalidRequestError("'text' must be a string", code="invalid_message")
    files = body.get("files")
    chat_id, svc, key = request.path_params["chat_id"], _agents(request), _key(request)
    await _chat(request)  # 404 before any stream starts
    await check_file_refs(request, files)
    return await _answer(body, lambda emit: svc.send_message(chat_id, text, files=files, emit=emit, api_key_id=key))


async def tool_result(request: Request) -> Response:
    body = await _body(request)
    call_id = body.get("call_id") or body.get("tool_call_id")
    if not isinstance(call_id, str):
        raise InvalidRequestError("'call_id' is required", code="invalid_tool_result")
    chat_id, svc, key = request.path_params["chat_id"], _agents(request), _key(request)
    chat = await _chat(request)
    svc._call(chat, call_id)  # 404 unknown_tool_call up front
    result = body.get("result")
    return await _answer(body, lambda emit: svc.submit_tool_result(chat_id, call_id, result, emit=emit, api_key_id=key))


async def approval(request: Request) -> Response:
    body = await _body(request)
    call_id = body.get("call_id") or body.get("tool_call_id")
    approved = body.get("approved")
    if not isinstance(call_id, str) or not isinstance(approved, bool):
        raise InvalidRequestError("send {call_id, approved: bool}", code="invalid_approval")
    chat_id, svc, key = request.path_params["chat_id"], _agents(request), _key(request)
    chat = await _chat(request)
    call = svc._call(chat, call_id)
    if call["status"] != "awaiting_approval":
        from ...errors import ConflictError

        raise ConflictError(f"tool call {call_id} is not pending approval", code="approval_not_pending")
    by, reason = body.get("by"), body.get("reason")
    details = {"chat_id": chat_id, "call_id": call_id, "approved": approved, "by": by, "reason": reason}
    await audit(request, "approval.given", target=call.get("name"), details=details)
    return await _answer(
        body, lambda emit: svc.decide(chat_id, call_id, approved, by=by, reason=reason, emit=emit, api_key_id=key)
    )


routes = [
    Route("/v1/agents", create_agent, methods=["POST"]),
    Route("/v1/agents/{ns}/{name}", get_agent, methods=["GET"]),
    Route("/v1/agents/{ns}/{name}/versions", agent_versions, methods=["GET"]),
    Route("/v1/agents/{ns}/{name}/chats", create_template_chat, methods=["POST"]),
    Route("/v1/chats", create_chat, methods=["POST"]),
    Route("/v1/chats/{chat_id}", get_chat, methods=["GET"]),
    Route("/v1/chats/{chat_id}/messages", send_message, methods=["POST"]),
    Route("/v1/chats/{chat_id}/tool_results", tool_result, methods=["POST"]),
    Route("/v1/chats/{chat_id}/approvals", approval, methods=["POST"]),
    Route("/v1/chats/{chat_id}/reset", reset_chat, methods=["POST"]),
]

# The API description (server/openapi): one declaration per route.
_CHAT_LINKS = {
    "GetChat": {"operationId": "getChat", "parameters": {"chat_id": "$response.body#/id"}},
    "SendMessage": {"operationId": "sendChatMessage", "parameters": {"chat_id": "$response.body#/id"}},
}
operations = [
    Operation(
        "POST", "/v1/agents", "Save an agent", "agents", "createAgent", body=ANY_OBJECT, response=ANY_OBJECT, status=201
    ),
    Operation("GET", "/v1/agents/{ns}/{name}", "An agent", "agents", "getAgent", response=ANY_OBJECT),
    Operation(
        "GET",
        "/v1/agents/{ns}/{name}/versions",
        "An agent's versions",
        "agents",
        "getAgentVersions",
        response=ANY_OBJECT,
    ),
    Operation(
        "POST",
        "/v1/agents/{ns}/{name}/chats",
        "Start a chat with an agent",
        "agents",
        "createAgentChat",
        body=ANY_OBJECT,
        body_required=False,
        response=ANY_OBJECT,
        status=201,
        links=_CHAT_LINKS,
    ),
    Operation(
        "POST",
        "/v1/chats",
        "Start a chat",
        "agents",
        "createChat",
        body=ANY_OBJECT,
        response=ANY_OBJECT,
        status=201,
        links=_CHAT_LINKS,
    ),
    Operation("GET", "/v1/chats/{chat_id}", "A chat", "agents", "getChat", response=ANY_OBJECT),
    Operation(
        "POST",
        "/v1/chats/{chat_id}/messages",
        "Send a message (SSE answer)",
        "agents",
        "sendChatMessage",
        body=ANY_OBJECT,
        response=SSE,
        response_media="text/event-stream",
    ),
    Operation(
        "POST",
        "/v1/chats/{chat_id}/tool_results",
        "A client tool's result",
        "agents",
        "postToolResult",
        body=ANY_OBJECT,
        response=SSE,
        response_media="text/event-stream",
    ),
    Operation(
        "POST",
        "/v1/chats/{chat_id}/approvals",
        "Approve or reject a tool call",
        "agents",
        "postApproval",
        body=ANY_OBJECT,
        response=SSE,
        response_media="text/event-stream",
    ),
    Operation("POST", "/v1/chats/{chat_id}/reset", "Reset a chat", "agents", "resetChat", response=ANY_OBJECT),
]
