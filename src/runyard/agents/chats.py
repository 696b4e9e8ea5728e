"""The agent store: versioned templates, chats (one JSON document each: messages, every tool call
with its status, steps, plan) and the ``memory`` tool's per-agent, per-user key-value rows."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..backends.store import new_id, utcnow
from ..errors import InvalidRequestError, NotFoundError, ValidationError
from .config import AgentConfig, parse_config

__all__ = ["AWAIT_APPROVAL", "AWAIT_RESULT", "FAILED", "IDLE", "MAX_STEPS", "ChatStore"]

_meta = sa.MetaData()
agent_templates = sa.Table(
    "agent_templates",
    _meta,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
agent_chats = sa.Table(
    "agent_chats",
    _meta,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("agent", sa.String(255)),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
agent_memory = sa.Table(
    "agent_memory",
    _meta,
    sa.Column("agent", sa.String(255), primary_key=True),
    sa.Column("user", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.JSON),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
IDLE, AWAIT_RESULT, AWAIT_APPROVAL, MAX_STEPS, FAILED = (
    "idle",
    "awaiting_tool_result",
    "awaiting_approval",
    "max_steps_reached",
    "failed",
)


def describe(name: str, version: int, cfg: AgentConfig) -> dict[str, Any]:
    """A template as the API shows it."""
    return {"id": f"{name}@{version}", "name": name, "version": version, "config": cfg.model_dump(exclude_none=True)}


class ChatStore:
    def __init__(
        self, engine: AsyncEngine, *, aliases: dict[str, dict[str, int]] | None = None, web_search: bool = False
    ) -> None:
        """``aliases``: per template name, label -> version (``[agents.aliases]``); ``web_search``:
        whether a search provider is configured (configs may ask for the tool)."""
        self.engine = engine
        self.aliases = aliases or {}
        self.web_search = web_search

    # -- templates ----------------------------------------------------------------------------
    async def create_template(self, name: str, config: Any) -> dict[str, Any]:
        """The next version of template ``name`` (``org/name``)."""
        if not TEMPLATE_NAME.match(name or ""):
            raise ValidationError("agent names look like 'org/name'", code="invalid_agent_name")
        cfg = parse_config(config, web_search=self.web_search)
        async with self.engine.begin() as conn:
            q = sa.select(sa.func.max(agent_templates.c.version)).where(agent_templates.c.name == name)
            version = int((await conn.execute(q)).scalar() or 0) + 1
            await conn.execute(
                agent_templates.insert().values(
                    name=name, version=version, config=cfg.model_dump(exclude_none=True), created_at=utcnow()
                )
            )
        return describe(name, version, cfg)

    async def get_template(self, ref: str) -> dict[str, Any]:
        """``org/name``, ``org/name@3`` (or ``@v3``), ``org/name@latest`` or ``org/name@<alias>``;
        404 ``agent_not_found``, 422 ``invalid_agent_ref`` for a label that is none of these."""
        name, _, version = ref.partition("@")
        q = sa.select(agent_templates).where(agent_templates.c.name == name)
        if version and version != "latest":
            number = self.aliases.get(name, {}).get(version)
            if number is None and re.fullmatch(r"[vV]?\d+", version):
                number = int(version.lstrip("vV"))
            if number is None:
                raise InvalidRequestError(
                    f"bad agent version {version!r}: a number, v<number>, 'latest' or an alias",
                    code="invalid_agent_ref",
                )
            q = q.where(agent_templates.c.version == number)
        q = q.order_by(agent_templates.c.version.desc()).limit(1)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            raise NotFoundError(f"agent {ref!r} not found", code="agent_not_found")
        return describe(row.name, row.version, AgentConfig.model_validate(row.config))

    async def list_versions(self, name: str) -> list[dict[str, Any]]:
        q = sa.select(agent_templates).where(agent_templates.c.name == name).order_by(agent_templates.c.version)
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(q))
        return [describe(r.name, r.version, AgentConfig.model_validate(r.config)) for r in rows]

    # -- chats --------------------------------------------------------------------------------
    async def create_chat(
        self,
        agent: str | dict[str, Any],
        *,
        user: str | None = None,
        parent: str | None = None,
        depth: int = 0,
        api_key_id: str | None = None,
    ) -> dict[str, Any]:
        """A new chat of a template ref or an inline config; ``api_key_id`` (the creating key)
        decides who may see it."""
        if isinstance(agent, str):
            tpl = await self.get_template(agent)
            ref, config = tpl["id"], tpl["config"]
        else:
            ref, config = None, parse_config(agent, web_search=self.web_search).model_dump(exclude_none=True)
        now = utcnow()
        chat = {
            "id": new_id(),
            "object": "chat",
            "agent": ref,
            "config": config,
            "user": user or "default",
            "status": IDLE,
            "messages": [],
            "tool_calls": [],
            "steps": [],
            "plan": [],
            "parent_id": parent,
            "depth": depth,
            "turn_steps": 0,
            "api_key_id": api_key_id,
            "created_at": now.isoformat(),
        }
        async with self.engine.begin() as conn:
            await conn.execute(
                agent_chats.insert().values(id=chat["id"], agent=ref, data=chat, created_at=now, updated_at=now)
            )
        return chat

    async def get_chat(self, chat_id: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(agent_chats.c.data).where(agent_chats.c.id == chat_id))).first()
        if row is None:
            raise NotFoundError(f"chat {chat_id} not found", code="chat_not_found")
        data: dict[str, Any] = row[0]
        return data

    async def save(self, chat: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                agent_chats.update().where(agent_chats.c.id == chat["id"]).values(data=chat, updated_at=utcnow())
            )

    # -- memory -------------------------------------------------------------------------------
    async def memory(self, chat: dict[str, Any], args: dict[str, Any]) -> Any:
        """The ``memory`` tool: ``get`` / ``set`` / ``delete`` / ``list`` keys of this agent and user."""
        agent = chat["agent"] or f"chat:{chat['id']}"
        if agent and "@" in agent:
            agent = agent.split("@", 1)[0]
        user, action, key = chat["user"], args.get("action"), args.get("key")
        t = agent_memory.c
        where = sa.and_(t.agent == agent, t.user == user)
        async with self.engine.begin() as conn:
            if action == "list":
                rows = await conn.execute(sa.select(t.key, t.value).where(where))
                return {"memory": {k: v["v"] for k, v in rows}}
            if not isinstance(key, str) or not key:
                return {"error": "invalid_arguments", "message": "memory needs a 'key'"}
            where = sa.and_(where, t.key == key)
            if action == "get":
                row = (await conn.execute(sa.select(t.value).where(where))).first()
                return {"key": key, "value": row[0]["v"] if row else None, "found": row is not None}
            if action == "delete":
                await conn.execute(agent_memory.delete().where(where))
                return {"key": key, "deleted": True}
            if action == "set":
                await conn.execute(agent_memory.delete().where(where))
                await conn.execute(
                    agent_memory.insert().values(
                        agent=agent, user=user, key=key, value={"v": args.get("value")}, updated_at=utcnow()
                    )
                )
                return {"key": key, "stored": True}
        return {"error": "invalid_arguments", "message": "action is one of get, set, delete, list"}
