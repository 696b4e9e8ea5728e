"""Agents in the SDK: ``client.agent(ref | config)`` -> send messages, run client tools, approve."""

from __future__ import annotations

import base64
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from runyard.client._base import AsyncAPIClient
from runyard.client._sync import Portal

__all__ = ["Agent", "AgentResponse", "Agents", "AsyncAgent", "AsyncAgents"]

PAUSED = ("awaiting_tool_result", "awaiting_approval")


class AgentResponse:
    """The chat after a turn: ``text`` (the last assistant message), ``tool_calls``, ``status``."""

    def __init__(self, chat: dict[str, Any]) -> None:
        self.chat = chat
        self.chat_id: str = chat["id"]
        self.status: str = chat["status"]
        self.tool_calls: list[dict[str, Any]] = chat.get("tool_calls", [])
        last = next((m for m in reversed(chat.get("messages", [])) if m["role"] == "assistant"), None)
        self.text: str | None = last.get("content") if last else None

    @property
    def pending_tool_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.tool_calls if c["status"] in ("awaiting_result", "awaiting_approval")]

    def __repr__(self) -> str:
        return f"AgentResponse(status={self.status!r}, text={self.text!r})"


def _file(f: Any) -> Any:
    """Attachments: bytes become a data URI; strings (data URIs, URLs, file refs) pass through."""
    if isinstance(f, bytes | bytearray):
        mime = "application/octet-stream"
        for magic, kind in ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif")):
            if bytes(f).startswith(magic):
                mime = kind
        return f"data:{mime};base64,{base64.b64encode(bytes(f)).decode()}"
    uri = getattr(f, "uri", None)
    return uri if isinstance(uri, str) else f


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class AsyncAgents:
    """Templates: ``await client.agents.create("org/name", config)``, ``get``, ``versions``."""

    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def create(self, name: str, config: dict[str, Any] | str) -> dict[str, Any]:
        """Store a new version of a template (``config``: a dict or YAML text)."""
        body: dict[str, Any] = {"name": name}
        if isinstance(config, str):
            body["yaml"] = config
        else:
            body["config"] = _config(config)[0]
        data: dict[str, Any] = await self._client.request("POST", "/v1/agents", json=body)
        return data

    async def get(self, ref: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._client.request("GET", f"/v1/agents/{ref}")
        return data


def _config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Callable[..., Any]]]:
    """Builders become specs; tools built ``from_function`` are remembered as local handlers."""
    handlers: dict[str, Callable[..., Any]] = {}
    tools = []
    for t in config.get("tools", []):
        if hasattr(t, "build"):
            if getattr(t, "fn", None) is not None:
                handlers[t._spec["name"]] = t.fn
            t = t.build()
        tools.append(t)
    internal: Any = config.get("internal_tools")
    if internal is not None and hasattr(internal, "build"):
        internal = internal.build()
    out = {**config, "tools": tools}
    if internal is not None:
        out["internal_tools"] = internal
    return out, handlers


class AsyncAgent:
    """One conversation with an agent (a template ref, or an ad-hoc config dict)."""

    def __init__(self, client: AsyncAPIClient, agent: str | dict[str, Any], *, user: str | None = None) -> None:
        self._client = client
        self._handlers: dict[str, Callable[..., Any]] = {}
        if isinstance(agent, dict):
            agent, self._handlers = _config(agent)
        self.agent = agent
        self.user = user
        self.chat_id: str | None = None

    async def _chat_id(self) -> str:
        if self.chat_id is None:
            body: dict[str, Any] = {"user": self.user} if self.user else {}
            if isinstance(self.agent, str):
                chat = await self._client.request("POST", f"/v1/agents/{self.agent}/chats", json=body)
            else:
                chat = await self._client.request("POST", "/v1/chats", json={**body, "agent": self.agent})
            self.chat_id = chat["id"]
        return self.chat_id

    async def _post(self, suffix: str, body: dict[str, Any], on_message: Callable[..., Any] | None) -> dict[str, Any]:
        path = f"/v1/chats/{await self._chat_id()}/{suffix}"
        if on_message is None:
            data: dict[str, Any] = await self._client.request("POST", path, json=body)
            return data
        chat: dict[str, Any] | None = None
        async for event in self._events(path, body):
            if event.get("type") == "done":
                chat = event["chat"]
            else:
                await _maybe_await(on_message(event))
        assert chat is not None
        return chat

    async def _events(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        events = await self._client.stream("POST", path, json={**body, "stream": True}, parse=lambda d: d)
        async with events:
            async for event in events:
                yield event

    async def _drive(
        self,
        chat: dict[str, Any],
        on_message: Callable[..., Any] | None,
        on_tool_call: Callable[..., Any] | None,
    ) -> AgentResponse:
        """While the chat waits on client tools we can run (callback or ``from_function``), run them."""
        while chat["status"] == "awaiting_tool_result":
            pending = [c for c in chat["tool_calls"] if c["status"] == "awaiting_result"]
            call = pending[0]
            handler = self._handlers.get(call["name"])
            if handler is not None:
                result = await _maybe_await(handler(**call["arguments"]))
            elif on_tool_call is not None:
                result = await _maybe_await(on_tool_call(call))
            else:
                break
            chat = await self._post("tool_results", {"call_id": call["id"], "result": result}, on_message)
        return AgentResponse(chat)

    async def send_message(
        self,
        text: str,
        files: list[Any] | None = None,
        on_message: Callable[..., Any] | None = None,
        on_tool_call: Callable[..., Any] | None = None,
    ) -> AgentResponse:
        """Send a user message and run the agent; ``on_message(event)`` gets streamed events
        (``delta``, ``tool_call``, ``tool_result``, ``awaiting_approval``, ...), ``on_tool_call(call)``
        returns a client tool's result."""
        body: dict[str, Any] = {"text": text}
        if files:
            body["files"] = [_file(f) for f in files]
        chat = await self._post("messages", body, on_message)
        return await self._drive(chat, on_message, on_tool_call)

    async def stream_messages(self, text: str, files: list[Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        """The streamed events of one turn, ending with ``{"type": "done", "chat": ...}``."""
        body: dict[str, Any] = {"text": text}
        if files:
            body["files"] = [_file(f) for f in files]
        async for event in self._events(f"/v1/chats/{await self._chat_id()}/messages", body):
            yield event

    async def submit_tool_result(
        self,
        call_id: str,
        result: Any,
        on_message: Callable[..., Any] | None = None,
        on_tool_call: Callable[..., Any] | None = None,
    ) -> AgentResponse:
        chat = await self._post("tool_results", {"call_id": call_id, "result": result}, on_message)
        return await self._drive(chat, on_message, on_tool_call)

    async def approve(
        self, call_id: str, *, by: str | None = None, on_tool_call: Callable[..., Any] | None = None
    ) -> AgentResponse:
        chat = await self._post("approvals", {"call_id": call_id, "approved": True, "by": by}, None)
        return await self._drive(chat, None, on_tool_call)

    async def deny(self, call_id: str, *, reason: str | None = None, by: str | None = None) -> AgentResponse:
        chat = await self._post("approvals", {"call_id": call_id, "approved": False, "by": by, "reason": reason}, None)
        return AgentResponse(chat)

    async def reset(self) -> AgentResponse:
        data = await self._client.request("POST", f"/v1/chats/{await self._chat_id()}/reset")
        return AgentResponse(data)

    async def get_chat(self) -> dict[str, Any]:
        data: dict[str, Any] = await self._client.request("GET", f"/v1/chats/{await self._chat_id()}")
        return data


class Agent:
    """Blocking twin of :class:`AsyncAgent` (callbacks run on the client's loop thread)."""

    def __init__(self, inner: AsyncAgent, portal: Portal) -> None:
        self._async = inner
        self._portal = portal

    @property
    def chat_id(self) -> str | None:
        return self._async.chat_id

    def send_message(
        self,
        text: str,
        files: list[Any] | None = None,
        on_message: Callable[..., Any] | None = None,
        on_tool_call: Callable[..., Any] | None = None,
    ) -> AgentResponse:
        return self._portal.call(self._async.send_message(text, files, on_message, on_tool_call))

    def stream_messages(self, text: str, files: list[Any] | None = None) -> Iterator[dict[str, Any]]:
        return self._portal.iterate(self._async.stream_messages(text, files))

    def submit_tool_result(
        self,
        call_id: str,
        result: Any,
        on_message: Callable[..., Any] | None = None,
        on_tool_call: Callable[..., Any] | None = None,
    ) -> AgentResponse:
        return self._portal.call(self._async.submit_tool_result(call_id, result, on_message, on_tool_call))

    def approve(
        self, call_id: str, *, by: str | None = None, on_tool_call: Callable[..., Any] | None = None
    ) -> AgentResponse:
        return self._portal.call(self._async.approve(call_id, by=by, on_tool_call=on_tool_call))

    def deny(self, call_id: str, *, reason: str | None = None, by: str | None = None) -> AgentResponse:
        return self._portal.call(self._async.deny(call_id, reason=reason, by=by))

    def reset(self) -> AgentResponse:
        return self._portal.call(self._async.reset())

    def get_chat(self) -> dict[str, Any]:
        return self._portal.call(self._async.get_chat())


class Agents:
    """Blocking twin of :class:`AsyncAgents`."""

    def __init__(self, inner: AsyncAgents, portal: Portal) -> None:
        self._async = inner
        self._portal = portal

    def create(self, name: str, config: dict[str, Any] | str) -> dict[str, Any]:
        return self._portal.call(self._async.create(name, config))

    def get(self, ref: str) -> dict[str, Any]:
        return self._portal.call(self._async.get(ref))
