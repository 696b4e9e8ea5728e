"""The server-side agent loop.

One step: call the model -> plan its tool calls (which run here, which wait for the caller or an
approval) -> run the server-side tools (independent ones in parallel) -> record the results ->
decide (pause, answer, or feed the results back and take another step). A turn ends on a final
answer, a pause (a client tool's result or an approval is needed) or ``max_steps``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ..backends.redis_lock import LocalLocks, Locks
from ..backends.store import utcnow
from ..errors import ConflictError, NotFoundError, RunyardError
from ..files import parse_file_ref
from ..inference import ChatOutcome, ChatRequest, ModelToolCall
from ..services.ai import AIService, CallContext
from ..services.files import FileService
from ..telemetry import spans
from .chats import AWAIT_APPROVAL, AWAIT_RESULT, FAILED, IDLE, MAX_STEPS, ChatStore
from .config import AgentConfig, ToolSpec, internal_enabled, tool_defs, tool_spec
from .tools import ServerTools

__all__ = ["AgentLoop", "Emit", "find_call"]

Emit = Callable[[dict[str, Any]], Awaitable[None]]
Chat = dict[str, Any]
Call = dict[str, Any]


class AgentLoop:
    def __init__(
        self, chats: ChatStore, ai: AIService, files: FileService, tools: ServerTools, locks: Locks | None = None
    ) -> None:
        """``locks``: per-chat locks (:class:`runyard.backends.redis_lock.RedisLocks` across gateways;
        default one process's)."""
        self.chats = chats
        self.ai = ai
        self.files = files
        self.tools = tools
        self.locks: Locks = locks if locks is not None else LocalLocks()

    def lock(self, chat_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Turns of one chat run one at a time (across gateways when the locks are shared)."""
        return self.locks.hold("chat:" + chat_id)

    # -- turns --------------------------------------------------------------------------------
    async def send_message(
        self, chat_id: str, text: str, *, files: list[Any] | None, emit: Emit | None, api_key_id: str | None
    ) -> Chat:
        """A user message, and the turn it starts; 409 ``chat_awaiting`` while calls are pending."""
        async with self.lock(chat_id):
            chat = await self.chats.get_chat(chat_id)
            if chat["status"] in (AWAIT_RESULT, AWAIT_APPROVAL):
                raise ConflictError(
                    f"chat is {chat['status']}; resolve its pending tool calls first", code="chat_awaiting"
                )
            content: Any = text
            if files:
                content = [{"type": "text", "text": text}] + [_file_part(await self._inline(f)) for f in files]
            chat["messages"].append({"role": "user", "content": content, "created_at": _now()})
            chat["turn_steps"] = 0
            chat["status"] = IDLE
            await self.run(chat, emit, api_key_id)
            return chat

    async def submit_tool_result(
        self, chat_id: str, call_id: str, result: Any, *, emit: Emit | None, api_key_id: str | None
    ) -> Chat:
        """A client tool's result (or, for a call awaiting approval, the caller's answer in its place:
        the call is resolved without running); the turn goes on once the step's calls all have one."""
        async with self.lock(chat_id):
            chat = await self.chats.get_chat(chat_id)
            call = find_call(chat, call_id)
            if call["status"] == "done":
                raise ConflictError(f"tool call {call_id} already has a result", code="tool_result_already_submitted")
            if call["status"] == "awaiting_approval":  # the caller decided and answers in the tool's place
                by = api_key_id or "anonymous"
                call["approval"] = {"approved": None, "by": by, "reason": "resolved by a tool result", "at": _now()}
            elif call["status"] != "awaiting_result":
                raise ConflictError(
                    f"tool call {call_id} is {call['status']}, not awaiting a result", code="tool_call_not_awaiting"
                )
            with spans.tool_call(call["name"], call_id, "client", call.get("created_at")):
                _finish_call(call, result)  # a client tool ran from the model's request to this result
            await self._resume(chat, emit, api_key_id)
            return chat

    async def decide(
        self,
        chat_id: str,
        call_id: str,
        approved: bool,
        *,
        by: str | None,
        reason: str | None,
        emit: Emit | None,
        api_key_id: str | None,
    ) -> Chat:
        """Approve (the tool runs, or waits for the client) or deny (the model sees the denial)."""
        async with self.lock(chat_id):
            chat = await self.chats.get_chat(chat_id)
            call = find_call(chat, call_id)
            if call["status"] != "awaiting_approval":
                raise ConflictError(f"tool call {call_id} is not pending approval", code="approval_not_pending")
            call["approval"] = {
                "approved": approved,
                "by": by or api_key_id or "anonymous",
                "reason": reason,
                "at": _now(),
            }
            if not approved:
                _finish_call(call, {"error": "denied", "message": reason or "the user denied this tool call"})
            else:
                spec = tool_spec(chat, call["name"])
                if spec is not None and spec.type == "client":
                    call["status"] = "awaiting_result"
                else:
                    call["status"] = "running"
                    _finish_call(call, await self.run_tool(chat, call, api_key_id))
            if emit:
                await emit({"type": "approval", "call_id": call_id, "approval": call["approval"]})
            await self._resume(chat, emit, api_key_id)
            return chat

    async def _inline(self, f: Any) -> Any:
        """A stored image (``runyard://files/<id>``) as a data URI, so vision models see it."""
        ref = parse_file_ref(f.get("uri") if isinstance(f, dict) else f)
        if ref is None:
            return f
        record = await self.files.get(ref)
        if not record.content_type.startswith("image/"):
            return f"{record.uri} ({record.filename or 'file'}, {record.content_type})"
        data = await self.files.read(record)
        return f"data:{record.content_type};base64,{base64.b64encode(data).decode()}"

    async def _resume(self, chat: Chat, emit: Emit | None, api_key_id: str | None) -> None:
        """Once every call of the last step has a result, feed them back and go on."""
        step_calls = [c for c in chat["tool_calls"] if c["step"] == len(chat["steps"]) - 1]
        if await self._paused(chat, step_calls, emit):
            return
        _feed_back(chat, step_calls)
        chat["status"] = IDLE
        await self.run(chat, emit, api_key_id)

    # -- the loop -----------------------------------------------------------------------------
    async def run(self, chat: Chat, emit: Emit | None, api_key_id: str | None) -> None:
        """Steps until an answer, a pause or ``max_steps``; the chat is saved at each stop."""
        cfg = AgentConfig.model_validate(chat["config"])
        with spans.agent_chat(chat.get("agent") or "chat", chat["id"], cfg.model) as span:
            await self._steps(chat, cfg, emit, api_key_id)
            span.set("runyard.agent.status", chat["status"])

    async def _steps(self, chat: Chat, cfg: AgentConfig, emit: Emit | None, api_key_id: str | None) -> None:
        ctx = CallContext(episode_id=None, api_key_id=api_key_id, tags={"agent_chat": chat["id"]})
        while True:
            if chat["turn_steps"] >= cfg.max_steps:
                chat["status"] = MAX_STEPS
                await self.chats.save(chat)
                if emit:
                    await emit({"type": "max_steps", "max_steps": cfg.max_steps})
                return
            result = await self._call_model(chat, cfg, ctx, emit)
            step_no = len(chat["steps"]) - 1
            if not result.tool_calls:  # a final answer
                chat["status"] = IDLE
                await self.chats.save(chat)
                return
            records = await self._plan_calls(chat, cfg, result.tool_calls, step_no, emit)
            await self._run_server_tools(chat, records, emit, api_key_id)
            if await self._paused(chat, records, emit):
                return
            _feed_back(chat, records)
            await self.chats.save(chat)

    async def _call_model(self, chat: Chat, cfg: AgentConfig, ctx: CallContext, emit: Emit | None) -> ChatOutcome:
        """One model call (streamed to ``emit`` when given), recorded as a step and an assistant
        message; a failed call fails the chat."""
        request = ChatRequest.model_validate(_request_params(chat, cfg))
        started = time.perf_counter()
        try:
            if emit is None:
                result = await self.ai.chat(request, ctx)
            else:
                stream = await self.ai.open_stream(request, ctx)
                async for delta in stream:
                    if delta.content:
                        await emit({"type": "delta", "content": delta.content})
                result = stream.result
        except RunyardError as err:
            chat["status"] = FAILED
            chat["error"] = err.to_dict()["error"]
            await self.chats.save(chat)
            raise
        calls = list(result.tool_calls)
        chat["turn_steps"] += 1
        chat["steps"].append(
            {
                "index": len(chat["steps"]),
                "inference_id": result.inference_id,
                "model": result.model,
                "content": result.content,
                "tool_calls": [c.id for c in calls],
                "finish_reason": result.finish_reason,
                "usage": result.usage.to_dict(),
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            }
        )
        assistant: dict[str, Any] = {"role": "assistant", "content": result.content}
        if calls:
            assistant["tool_calls"] = [c.to_openai() for c in calls]
        assistant["created_at"] = _now()
        chat["messages"].append(assistant)
        if emit and result.content and not calls:
            await emit({"type": "message", "message": assistant})
        return result

    async def _plan_calls(
        self, chat: Chat, cfg: AgentConfig, calls: list[ModelToolCall], step_no: int, emit: Emit | None
    ) -> list[Call]:
        """A record per call: ``running`` (runs here), ``awaiting_approval``, ``awaiting_result``
        (a client tool), or already ``done`` with an error (bad arguments, unknown tool)."""
        records = []
        for c in calls:
            spec = tool_spec(chat, c.name)
            args = _arguments(c)
            rec = _new_call(c, args or {}, step_no, spec)
            if args is None:
                _finish_call(rec, {"error": "invalid_arguments", "message": "arguments are not a JSON object"})
            elif spec is None and c.name not in internal_enabled(cfg):
                _finish_call(rec, {"error": "unknown_tool", "message": f"no tool named {c.name!r}"})
            elif spec is not None and spec.require_approval:
                rec["status"] = "awaiting_approval"
            elif spec is not None and spec.type == "client":
                rec["status"] = "awaiting_result"
            records.append(rec)
            chat["tool_calls"].append(rec)
            if emit:
                await emit({"type": "tool_call", "call": _public_call(rec)})
        return records

    async def _run_server_tools(
        self, chat: Chat, records: list[Call], emit: Emit | None, api_key_id: str | None
    ) -> None:
        """Run the ``running`` calls, in parallel, recording each result as it comes."""

        async def run(rec: Call) -> None:
            _finish_call(rec, await self.run_tool(chat, rec, api_key_id))
            if emit:
                await emit({"type": "tool_result", "call": _public_call(rec)})

        await asyncio.gather(*(run(r) for r in records if r["status"] == "running"))

    async def _paused(self, chat: Chat, calls: list[Call], emit: Emit | None) -> bool:
        """Some call still waits (for the caller or an approval): the chat pauses, saved."""
        if all(c["status"] == "done" for c in calls):
            return False
        chat["status"] = AWAIT_APPROVAL if any(c["status"] == "awaiting_approval" for c in calls) else AWAIT_RESULT
        await self.chats.save(chat)
        if emit:
            await emit({"type": chat["status"], "calls": [_public_call(c) for c in calls if c["status"] != "done"]})
        return True

    # -- tools --------------------------------------------------------------------------------
    async def run_tool(self, chat: Chat, call: Call, api_key_id: str | None) -> Any:
        """One server-side call's result; a failing tool gives the model an error, not the chat."""
        with spans.tool_call(call["name"], call["id"], call.get("type")) as span:
            try:
                spec = tool_spec(chat, call["name"])
                if spec is not None and spec.type == "agent":
                    return await self._agent_tool(chat, spec, call["arguments"], call, api_key_id)
                return await self.tools.run(chat, call, spec, api_key_id)
            except RunyardError as err:
                span.fail(err, err.code)
                return {"error": err.code, "message": err.message}
            except Exception as err:  # a tool failure is the model's to see, not a crash of the chat
                span.fail(err, "tool_failed")
                return {"error": "tool_failed", "message": f"{type(err).__name__}: {err}"}

    async def _agent_tool(
        self, chat: Chat, spec: ToolSpec, args: dict[str, Any], call: Call, api_key_id: str | None
    ) -> Any:
        """A sub-agent: a child chat of the template ``spec.agent``, run to its answer."""
        assert spec.agent
        cfg = AgentConfig.model_validate(chat["config"])
        if chat["depth"] + 1 > cfg.max_depth:
            return {"error": "max_depth", "message": f"sub-agents nest at most {cfg.max_depth} deep"}
        sub = await self.chats.create_chat(
            spec.agent, user=chat["user"], parent=chat["id"], depth=chat["depth"] + 1, api_key_id=chat.get("api_key_id")
        )
        call["sub_chat_id"] = sub["id"]
        text = args.get("message") or args.get("task") or orjson.dumps(args).decode()
        done = await self.send_message(sub["id"], str(text), files=None, emit=None, api_key_id=api_key_id)
        if done["status"] != IDLE:
            return {"error": "sub_agent_" + done["status"], "sub_chat_id": sub["id"]}
        last = next((m for m in reversed(done["messages"]) if m["role"] == "assistant"), None)
        return {"sub_chat_id": sub["id"], "answer": last["content"] if last else None}


def find_call(chat: Chat, call_id: str) -> Call:
    """The chat's tool call ``call_id`` (ids can repeat across steps: the latest wins); 404."""
    for call in reversed(chat["tool_calls"]):
        if call["id"] == call_id:
            return call
    raise NotFoundError(f"no tool call {call_id!r} in this chat", code="unknown_tool_call")


def _request_params(chat: Chat, cfg: AgentConfig) -> dict[str, Any]:
    """The model request: system prompt (with skills and the plan), the chat's messages, tools."""
    messages: list[dict[str, Any]] = []
    system = _system(cfg, chat)
    if system:
        messages.append({"role": "system", "content": system})
    messages += [{k: v for k, v in m.items() if k != "created_at"} for m in chat["messages"]]
    params: dict[str, Any] = {"model": cfg.model, "messages": messages}
    tools = tool_defs(cfg)
    if tools:
        params["tools"] = tools
    if cfg.temperature is not None:
        params["temperature"] = cfg.temperature
    if cfg.max_tokens is not None:
        params["max_tokens"] = cfg.max_tokens
    return params


def _system(cfg: AgentConfig, chat: Chat) -> str:
    parts = [cfg.system_prompt] if cfg.system_prompt else []
    if cfg.skills:
        lines = [f"- {s.name}: {s.description}" for s in cfg.skills]
        parts.append("Skills available (load one with the load_skill tool):\n" + "\n".join(lines))
    if chat["plan"]:
        parts.append("Current plan: " + orjson.dumps(chat["plan"]).decode())
    return "\n\n".join(parts)


def _arguments(c: ModelToolCall) -> dict[str, Any] | None:
    """The call's arguments, ``None`` unless they are a JSON object."""
    try:
        args = orjson.loads(c.arguments or "{}")
    except orjson.JSONDecodeError:
        return None
    return args if isinstance(args, dict) else None


def _new_call(c: ModelToolCall, args: dict[str, Any], step_no: int, spec: ToolSpec | None) -> Call:
    return {
        "id": c.id,
        "name": c.name,
        "arguments": args,
        "raw_arguments": c.arguments,
        "step": step_no,
        "type": spec.type if spec else "internal",
        "status": "running",
        "result": None,
        "created_at": _now(),
    }


def _finish_call(call: Call, result: Any) -> None:
    call["status"] = "done"
    call["result"] = result
    call["finished_at"] = _now()


def _feed_back(chat: Chat, calls: list[Call]) -> None:
    """The calls' results as ``tool`` messages, for the next model call."""
    for c in calls:
        message = {"role": "tool", "tool_call_id": c["id"], "name": c["name"], "content": _text(c["result"])}
        chat["messages"].append(message)


def _public_call(call: Call) -> Call:
    return {k: v for k, v in call.items() if k != "raw_arguments"}


def _text(result: Any) -> str:
    return result if isinstance(result, str) else orjson.dumps(result).decode()


def _now() -> str:
    return utcnow().isoformat()


def _file_part(f: Any) -> dict[str, Any]:
    """An attachment as a content part: data URIs / URLs of images become image parts."""
    if isinstance(f, dict):
        uri = f.get("uri") or f.get("url") or f.get("data")
    else:
        uri = str(f)
    if isinstance(uri, str) and (uri.startswith("data:image/") or re.search(r"\.(png|jpe?g|gif|webp)$", uri)):
        return {"type": "image_url", "image_url": {"url": uri}}
    return {"type": "text", "text": f"[attached file: {str(uri)[:200]}]"}
