"""Agents as the routes see them: templates and chats from the store, turns through the loop.

The pieces live in :mod:`runyard.agents` (config, chat store, loop, server tools, sandbox).
"""

from __future__ import annotations

from typing import Any

from ..agents.chats import IDLE, ChatStore
from ..agents.config import parse_config
from ..agents.loop import AgentLoop, Emit, find_call
from .preflight import Preflight

__all__ = ["AgentService", "Emit"]


class AgentService:
    """A thin facade over the chat store and the loop."""

    def __init__(self, chats: ChatStore, loop: AgentLoop, preflight: Preflight) -> None:
        self.chats = chats
        self.loop = loop
        self.preflight = preflight

    async def create_template(
        self, name: str, config: Any, *, viewer: str | None = None, created_by: str | None = None
    ) -> dict[str, Any]:
        """``viewer``: the caller's workspace (None: sees all); see :class:`ChatStore`."""
        cfg = parse_config(config, web_search=self.chats.web_search)
        self.preflight.check_agent_model(cfg.model)  # refused here, not at the first message
        return await self.chats.create_template(name, config, viewer=viewer, created_by=created_by)

    async def get_template(self, ref: str, *, viewer: str | None = None) -> dict[str, Any]:
        return await self.chats.get_template(ref, viewer=viewer)

    async def list_versions(self, name: str, *, viewer: str | None = None) -> list[dict[str, Any]]:
        return await self.chats.list_versions(name, viewer=viewer)

    async def create_chat(
        self,
        agent: str | dict[str, Any],
        *,
        user: str | None = None,
        parent: str | None = None,
        depth: int = 0,
        api_key_id: str | None = None,
    ) -> dict[str, Any]:
        """A new chat; ``api_key_id`` (the creating key) decides who may see it."""
        return await self.chats.create_chat(agent, user=user, parent=parent, depth=depth, api_key_id=api_key_id)

    async def get_chat(self, chat_id: str) -> dict[str, Any]:
        return await self.chats.get_chat(chat_id)

    async def reset(self, chat_id: str) -> dict[str, Any]:
        """The chat emptied (messages, calls, steps, plan), idle again."""
        async with self.loop.lock(chat_id):
            chat = await self.chats.get_chat(chat_id)
            chat.update(status=IDLE, messages=[], tool_calls=[], steps=[], plan=[], turn_steps=0)
            await self.chats.save(chat)
            return chat

    async def send_message(
        self,
        chat_id: str,
        text: str,
        *,
        files: list[Any] | None = None,
        emit: Emit | None = None,
        api_key_id: str | None = None,
    ) -> dict[str, Any]:
        return await self.loop.send_message(chat_id, text, files=files, emit=emit, api_key_id=api_key_id)

    async def submit_tool_result(
        self, chat_id: str, call_id: str, result: Any, *, emit: Emit | None = None, api_key_id: str | None = None
    ) -> dict[str, Any]:
        return await self.loop.submit_tool_result(chat_id, call_id, result, emit=emit, api_key_id=api_key_id)

    async def decide(
        self,
        chat_id: str,
        call_id: str,
        approved: bool,
        *,
        by: str | None = None,
        reason: str | None = None,
        emit: Emit | None = None,
        api_key_id: str | None = None,
    ) -> dict[str, Any]:
        return await self.loop.decide(
            chat_id, call_id, approved, by=by, reason=reason, emit=emit, api_key_id=api_key_id
        )

    @staticmethod
    def _call(chat: dict[str, Any], call_id: str) -> dict[str, Any]:
        """The chat's tool call ``call_id``; 404 ``unknown_tool_call`` (the routes check up front)."""
        return find_call(chat, call_id)
