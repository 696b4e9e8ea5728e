"""The agent store: versioned templates, chats (one JSON document each: messages, every tool call
with its status, steps, plan) and the ``memory`` tool's per-agent, per-user key-value rows."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..backends.name_locks import lock_name
from ..backends.store import new_id, utcnow
from ..errors import InvalidRequestError, NotFoundError, ValidationError
from ..services.namespaces import Namespaces, namespace_of
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
    sa.Column("workspace", sa.String(255)),  # the namespace's owner; None: the operator's
    sa.Column("created_by", sa.String(64)),  # the key that created this version
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
    """Templates take ``viewer`` (the caller's workspace, None for one who sees everything):
    another workspace's namespace answers as an unknown name (see :mod:`runyard.services.namespaces`)."""

    def __init__(
        self,
        engine: AsyncEngine,
        namespaces: Namespaces | None = None,
        *,
        aliases: dict[str, dict[str, int]] | None = None,
        web_search: bool = False,
    ) -> None:
        """``aliases``: per template name, label -> version (``[agents.aliases]``); ``web_search``:
        whether a search provider is configured (configs may ask for the tool)."""
        self.engine = engine
        self.namespaces = namespaces or Namespaces()
        self.aliases = aliases or {}
        self.web_search = web_search

    # -- templates ----------------------------------------------------------------------------
    async def create_template(
        self, name: str, config: Any, *, viewer: str | None = None, created_by: str | None = None
    ) -> dict[str, Any]:
        """The next version of template ``name`` (``org/name``); a new namespace becomes
        ``viewer``'s, 403 ``namespace_taken`` when it is another's."""
        if not TEMPLATE_NAME.match(name or ""):
            raise ValidationError("agent names look like 'org/name'", code="invalid_agent_name")
        cfg = parse_config(config, web_search=self.web_search)
        namespace, t = namespace_of(name), agent_templates.c
        async with self.engine.begin() as conn:
            await lock_name(conn, "namespace:" + namespace)  # a claim or a version at a time, across gateways
            first = (
                await conn.execute(sa.select(t.workspace).where(t.name.startswith(namespace + "/", autoescape=True)))
            ).first()
            owner = first[0] if first else viewer
            self.namespaces.check_claim(viewer, namespace, owner, exists=first is not None)
            q = sa.select(sa.func.max(t.version)).where(t.name == name)
            version = int((await conn.execute(q)).scalar() or 0) + 1
            await conn.execute(
                agent_templates.insert().values(
                    name=name,
                    version=version,
                    config=cfg.model_dump(exclude_none=True),
                    created_at=utcnow(),
                    workspace=owner,
                    created_by=created_by,
                )
            )
        return describe(name, version, cfg)

    async def get_template(self, ref: str, *, viewer: str | None = None) -> dict[str, Any]:
        """``org/name``, ``org/name@3`` (or ``@v3``), ``org/name@latest`` or ``org/name@<alias>``;
        404 ``agent_not_found`` (also for another workspace's), 422 ``invalid_agent_ref`` for a label
        that is none of these."""
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
        hidden = NotFoundError(f"agent {ref!r} not found", code="agent_not_found")
        if row is None:
            raise hidden
        self.namespaces.check_read(viewer, namespace_of(name), row.workspace, hidden)
        return describe(row.name, row.version, AgentConfig.model_validate(row.config))

    async def list_versions(self, name: str, *, viewer: str | None = None) -> list[dict[str, Any]]:
        """Every version of ``name`` (none for an unknown name, or another workspace's)."""
        q = sa.select(agent_templates).where(agent_templates.c.name == name).order_by(agent_templates.c.version)
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(q))
        namespace = namespace_of(name)
        return [
            describe(r.name, r.version, AgentConfig.model_validate(r.config))
            for r in rows
            if self.namespaces.readable(viewer, namespace, r.workspace)
        ]

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
        decides who may see it, and which templates it may use."""
        if isinstance(agent, str):
            tpl = await self.get_template(agent, viewer=await self.namespaces.viewer(api_key_id))
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
