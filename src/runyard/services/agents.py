"""Agents: versioned templates, persisted chats and the server-side agent loop.

A chat is one JSON document (messages, every tool call with its status, steps, plan). The
loop: model call -> tool calls -> server-side tools run (independent ones in parallel) ->
results fed back -> repeat, until a final answer, a pause (a client tool's result or an
approval is needed) or ``max_steps``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import sqlalchemy as sa
import yaml
from pydantic import ValidationError as PydanticValidationError

from ..backends.store import new_id, utcnow
from ..errors import ConflictError, InvalidRequestError, NotFoundError, RunyardError, ValidationError
from ..files import parse_file_ref
from ..types import ChatRequest, ImageRequest
from .agent_tools import AgentConfig, ToolSpec, check_tools, run_code
from .ai import CallContext
from .preflight import check_agent_model
from .urlguard import check_url
from .webhooks import SIGNATURE_HEADER, sign

if TYPE_CHECKING:
    from ..gateway import Gateway

Emit = Callable[[dict[str, Any]], Awaitable[None]]

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

INTERNAL_SCHEMAS: dict[str, dict[str, Any]] = {
    "plan": {
        "description": "Keep a todo list for this chat: send the whole list each time.",
        "parameters": {
            "type": "object",
            "properties": {
                "todos": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"title": {"type": "string"}, "done": {"type": "boolean"}},
                        "required": ["title"],
                    },
                }
            },
            "required": ["todos"],
        },
    },
    "memory": {
        "description": "Key-value memory kept across chats for this agent and user.",
        "parameters": {
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["get", "set", "delete", "list"]},
                "key": {"type": "string"},
                "value": {},
            },
            "required": ["action"],
        },
    },
    "code_execution": {
        "description": "Run Python code in a sandbox (no network, limited CPU/memory/time); returns stdout.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    },
    "image_generation": {
        "description": "Generate an image from a text prompt; returns the image file(s).",
        "parameters": {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
    },
    "load_skill": {
        "description": "Load the full instructions of one of the skills listed in the system prompt.",
        "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    },
}


def parse_config(data: Any) -> AgentConfig:
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as err:
            raise InvalidRequestError(f"agent YAML does not parse: {err}", code="invalid_yaml") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("an agent config must be an object", code="invalid_agent_config")
    try:
        config = AgentConfig.model_validate(data)
    except PydanticValidationError as err:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in err.errors()]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        raise ValidationError(
            f"invalid agent config: {summary}", code="invalid_agent_config", details=problems
        ) from None
    check_tools(config)
    return config


class AgentService:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self._locks: dict[str, asyncio.Lock] = {}
        self._skill_cache: dict[str, str] = {}

    # -- templates ----------------------------------------------------------------------------
    async def create_template(self, name: str, config: Any) -> dict[str, Any]:
        if not TEMPLATE_NAME.match(name or ""):
            raise ValidationError("agent names look like 'org/name'", code="invalid_agent_name")
        cfg = parse_config(config)
        check_agent_model(cfg.model, self.gw)  # an unknown model is refused here, not at the first message
        engine = self.gw.store.engine
        async with engine.begin() as conn:
            q = sa.select(sa.func.max(agent_templates.c.version)).where(agent_templates.c.name == name)
            version = int((await conn.execute(q)).scalar() or 0) + 1
            await conn.execute(
                agent_templates.insert().values(
                    name=name, version=version, config=cfg.model_dump(exclude_none=True), created_at=utcnow()
                )
            )
        return self._describe(name, version, cfg)

    @staticmethod
    def _describe(name: str, version: int, cfg: AgentConfig) -> dict[str, Any]:
        return {
            "id": f"{name}@{version}",
            "name": name,
            "version": version,
            "config": cfg.model_dump(exclude_none=True),
        }

    async def get_template(self, ref: str) -> dict[str, Any]:
        name, _, version = ref.partition("@")
        q = sa.select(agent_templates).where(agent_templates.c.name == name)
        if version and version != "latest":
            if not version.isdigit():
                raise InvalidRequestError(f"bad agent version {version!r}", code="invalid_agent_ref")
            q = q.where(agent_templates.c.version == int(version))
        q = q.order_by(agent_templates.c.version.desc()).limit(1)
        async with self.gw.store.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            raise NotFoundError(f"agent {ref!r} not found", code="agent_not_found")
        return self._describe(row.name, row.version, AgentConfig.model_validate(row.config))

    async def list_versions(self, name: str) -> list[dict[str, Any]]:
        q = sa.select(agent_templates).where(agent_templates.c.name == name).order_by(agent_templates.c.version)
        async with self.gw.store.engine.connect() as conn:
            rows = list(await conn.execute(q))
        return [self._describe(r.name, r.version, AgentConfig.model_validate(r.config)) for r in rows]

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
        """A new chat; ``api_key_id`` (the creating key) decides who may see it."""
        if isinstance(agent, str):
            tpl = await self.get_template(agent)
            ref, config = tpl["id"], tpl["config"]
        else:
            ref, config = None, parse_config(agent).model_dump(exclude_none=True)
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
        async with self.gw.store.engine.begin() as conn:
            await conn.execute(
                agent_chats.insert().values(id=chat["id"], agent=ref, data=chat, created_at=now, updated_at=now)
            )
        return chat

    async def get_chat(self, chat_id: str) -> dict[str, Any]:
        async with self.gw.store.engine.connect() as conn:
            row = (await conn.execute(sa.select(agent_chats.c.data).where(agent_chats.c.id == chat_id))).first()
        if row is None:
            raise NotFoundError(f"chat {chat_id} not found", code="chat_not_found")
        data: dict[str, Any] = row[0]
        return data

    async def _save(self, chat: dict[str, Any]) -> None:
        async with self.gw.store.engine.begin() as conn:
            await conn.execute(
                agent_chats.update().where(agent_chats.c.id == chat["id"]).values(data=chat, updated_at=utcnow())
            )

    def _lock(self, chat_id: str) -> asyncio.Lock:
        return self._locks.setdefault(chat_id, asyncio.Lock())

    async def reset(self, chat_id: str) -> dict[str, Any]:
        async with self._lock(chat_id):
            chat = await self.get_chat(chat_id)
            chat.update(status=IDLE, messages=[], tool_calls=[], steps=[], plan=[], turn_steps=0)
            await self._save(chat)
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
        async with self._lock(chat_id):
            chat = await self.get_chat(chat_id)
            if chat["status"] in (AWAIT_RESULT, AWAIT_APPROVAL):
                raise ConflictError(
                    f"chat is {chat['status']}; resolve its pending tool calls first", code="chat_awaiting"
                )
            content: Any = text
            if files:
                content = [{"type": "text", "text": text}] + [_file_part(await self._inline(f)) for f in files]
            chat["messages"].append({"role": "user", "content": content, "created_at": utcnow().isoformat()})
            chat["turn_steps"] = 0
            chat["status"] = IDLE
            await self._loop(chat, emit, api_key_id)
            return chat

    async def submit_tool_result(
        self, chat_id: str, call_id: str, result: Any, *, emit: Emit | None = None, api_key_id: str | None = None
    ) -> dict[str, Any]:
        async with self._lock(chat_id):
            chat = await self.get_chat(chat_id)
            call = self._call(chat, call_id)
            if call["status"] == "done":
                raise ConflictError(f"tool call {call_id} already has a result", code="tool_result_already_submitted")
            if call["status"] != "awaiting_result":
                raise ConflictError(
                    f"tool call {call_id} is {call['status']}, not awaiting a result", code="tool_call_not_awaiting"
                )
            self._finish_call(chat, call, result)
            await self._resume(chat, emit, api_key_id)
            return chat

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
        async with self._lock(chat_id):
            chat = await self.get_chat(chat_id)
            call = self._call(chat, call_id)
            if call["status"] != "awaiting_approval":
                raise ConflictError(f"tool call {call_id} is not pending approval", code="approval_not_pending")
            call["approval"] = {
                "approved": approved,
                "by": by or api_key_id or "anonymous",
                "reason": reason,
                "at": utcnow().isoformat(),
            }
            if not approved:
                self._finish_call(
                    chat, call, {"error": "denied", "message": reason or "the user denied this tool call"}
                )
            else:
                spec = self._spec(chat, call["name"])
                if spec is not None and spec.type == "client":
                    call["status"] = "awaiting_result"
                else:
                    call["status"] = "running"
                    result = await self._run_tool(chat, call, api_key_id)
                    self._finish_call(chat, call, result)
            if emit:
                await emit({"type": "approval", "call_id": call_id, "approval": call["approval"]})
            await self._resume(chat, emit, api_key_id)
            return chat

    async def _inline(self, f: Any) -> Any:
        """A stored image (``runyard://files/<id>``) as a data URI, so vision models see it."""
        ref = parse_file_ref(f.get("uri") if isinstance(f, dict) else f)
        if ref is None:
            return f
        record = await self.gw.files.get(ref)
        if not record.content_type.startswith("image/"):
            return f"{record.uri} ({record.filename or 'file'}, {record.content_type})"
        data = await self.gw.files.read(record)
        return f"data:{record.content_type};base64,{base64.b64encode(data).decode()}"

    def _call(self, chat: dict[str, Any], call_id: str) -> dict[str, Any]:
        for call in reversed(chat["tool_calls"]):  # ids can repeat across steps: the latest wins
            if call["id"] == call_id:
                return call
        raise NotFoundError(f"no tool call {call_id!r} in this chat", code="unknown_tool_call")

    @staticmethod
    def _finish_call(chat: dict[str, Any], call: dict[str, Any], result: Any) -> None:
        call["status"] = "done"
        call["result"] = result
        call["finished_at"] = utcnow().isoformat()

    async def _resume(self, chat: dict[str, Any], emit: Emit | None, api_key_id: str | None) -> None:
        """Once every call of the last step has a result, feed them back and go on."""
        step_calls = [c for c in chat["tool_calls"] if c["step"] == len(chat["steps"]) - 1]
        if any(c["status"] != "done" for c in step_calls):
            chat["status"] = _pause_status(step_calls)
            await self._save(chat)
            if emit:
                await emit(_pause_event(chat, step_calls))
            return
        for c in step_calls:
            chat["messages"].append(
                {"role": "tool", "tool_call_id": c["id"], "name": c["name"], "content": _text(c["result"])}
            )
        chat["status"] = IDLE
        await self._loop(chat, emit, api_key_id)

    # -- the loop -----------------------------------------------------------------------------
    def _spec(self, chat: dict[str, Any], name: str) -> ToolSpec | None:
        for t in chat["config"].get("tools", []):
            if t["name"] == name:
                return ToolSpec.model_validate(t)
        return None

    def _tool_defs(self, cfg: AgentConfig) -> list[dict[str, Any]]:
        defs = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in cfg.tools
        ]
        for name in sorted(self._internal_enabled(cfg), key=list(INTERNAL_SCHEMAS).index):
            defs.append({"type": "function", "function": {"name": name, **INTERNAL_SCHEMAS[name]}})
        return defs

    def _system(self, cfg: AgentConfig, chat: dict[str, Any]) -> str:
        parts = [cfg.system_prompt] if cfg.system_prompt else []
        if cfg.skills:
            lines = [f"- {s.name}: {s.description}" for s in cfg.skills]
            parts.append("Skills available (load one with the load_skill tool):\n" + "\n".join(lines))
        if chat["plan"]:
            parts.append("Current plan: " + orjson.dumps(chat["plan"]).decode())
        return "\n\n".join(parts)

    async def _loop(self, chat: dict[str, Any], emit: Emit | None, api_key_id: str | None) -> None:
        cfg = AgentConfig.model_validate(chat["config"])
        tools = self._tool_defs(cfg)
        ctx = CallContext(episode_id=None, api_key_id=api_key_id, tags={"agent_chat": chat["id"]})
        while True:
            if chat["turn_steps"] >= cfg.max_steps:
                chat["status"] = MAX_STEPS
                await self._save(chat)
                if emit:
                    await emit({"type": "max_steps", "max_steps": cfg.max_steps})
                return
            messages: list[dict[str, Any]] = []
            system = self._system(cfg, chat)
            if system:
                messages.append({"role": "system", "content": system})
            messages += [{k: v for k, v in m.items() if k != "created_at"} for m in chat["messages"]]
            params: dict[str, Any] = {"model": cfg.model, "messages": messages}
            if tools:
                params["tools"] = tools
            if cfg.temperature is not None:
                params["temperature"] = cfg.temperature
            if cfg.max_tokens is not None:
                params["max_tokens"] = cfg.max_tokens
            request = ChatRequest.model_validate(params)
            started = time.perf_counter()
            try:
                if emit is None:
                    result = await self.gw.ai.chat(request, ctx)
                else:
                    stream = await self.gw.ai.open_stream(request, ctx)
                    async for delta in stream:
                        if delta.content:
                            await emit({"type": "delta", "content": delta.content})
                    result = stream.result
            except RunyardError as err:
                chat["status"] = FAILED
                chat["error"] = err.to_dict()["error"]
                await self._save(chat)
                raise
            step_no = len(chat["steps"])
            chat["turn_steps"] += 1
            calls = list(result.tool_calls)
            chat["steps"].append(
                {
                    "index": step_no,
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
            assistant["created_at"] = utcnow().isoformat()
            chat["messages"].append(assistant)
            if emit and result.content and not calls:
                await emit({"type": "message", "message": assistant})
            if not calls:
                chat["status"] = IDLE
                await self._save(chat)
                return
            records = []
            for c in calls:
                try:
                    args = orjson.loads(c.arguments or "{}")
                except orjson.JSONDecodeError:
                    args = None
                spec = self._spec(chat, c.name)
                rec: dict[str, Any] = {
                    "id": c.id,
                    "name": c.name,
                    "arguments": args if isinstance(args, dict) else {},
                    "raw_arguments": c.arguments,
                    "step": step_no,
                    "type": spec.type if spec else "internal",
                    "status": "running",
                    "result": None,
                    "created_at": utcnow().isoformat(),
                }
                if not isinstance(args, dict):
                    self._finish_call(
                        chat, rec, {"error": "invalid_arguments", "message": "arguments are not a JSON object"}
                    )
                elif spec is None and c.name not in self._internal_enabled(cfg):
                    self._finish_call(chat, rec, {"error": "unknown_tool", "message": f"no tool named {c.name!r}"})
                elif spec is not None and spec.require_approval:
                    rec["status"] = "awaiting_approval"
                elif spec is not None and spec.type == "client":
                    rec["status"] = "awaiting_result"
                records.append(rec)
                chat["tool_calls"].append(rec)
                if emit:
                    await emit({"type": "tool_call", "call": _public_call(rec)})
            runnable = [r for r in records if r["status"] == "running"]

            async def run(rec: dict[str, Any]) -> None:
                res = await self._run_tool(chat, rec, api_key_id)
                self._finish_call(chat, rec, res)
                if emit:
                    await emit({"type": "tool_result", "call": _public_call(rec)})

            await asyncio.gather(*(run(r) for r in runnable))
            if any(r["status"] != "done" for r in records):
                chat["status"] = _pause_status(records)
                await self._save(chat)
                if emit:
                    await emit(_pause_event(chat, records))
                return
            for r in records:
                chat["messages"].append(
                    {"role": "tool", "tool_call_id": r["id"], "name": r["name"], "content": _text(r["result"])}
                )
            await self._save(chat)

    @staticmethod
    def _internal_enabled(cfg: AgentConfig) -> set[str]:
        names = {n for n in ("plan", "memory", "code_execution") if getattr(cfg.internal_tools, n)}
        if cfg.internal_tools.image_generation is not None:
            names.add("image_generation")
        if cfg.skills:
            names.add("load_skill")
        return names

    # -- tools --------------------------------------------------------------------------------
    async def _run_tool(self, chat: dict[str, Any], call: dict[str, Any], api_key_id: str | None) -> Any:
        try:
            spec = self._spec(chat, call["name"])
            args = call["arguments"]
            if spec is None:
                return await self._internal(chat, call, args)
            if spec.type == "app":
                return await self._app_tool(spec, args, api_key_id, call)
            if spec.type == "webhook":
                return await self._webhook_tool(spec, args, call)
            if spec.type == "agent":
                return await self._agent_tool(chat, spec, args, call, api_key_id)
            return {"error": "client_tool", "message": "client tools are run by the caller"}
        except RunyardError as err:
            return {"error": err.code, "message": err.message}
        except Exception as err:  # a tool failure is the model's to see, not a crash of the chat
            return {"error": "tool_failed", "message": f"{type(err).__name__}: {err}"}

    async def _internal(self, chat: dict[str, Any], call: dict[str, Any], args: dict[str, Any]) -> Any:
        name = call["name"]
        if name == "plan":
            todos = args.get("todos") or []
            chat["plan"] = [
                {"title": str(t.get("title", "")), "done": bool(t.get("done", False))}
                for t in todos
                if isinstance(t, dict)
            ]
            return {"plan": chat["plan"]}
        if name == "memory":
            return await self._memory(chat, args)
        if name == "code_execution":
            return await run_code(str(args.get("code", "")))
        if name == "load_skill":
            return await self._load_skill(chat, str(args.get("name", "")))
        if name == "image_generation":
            return await self._image(chat, call, str(args.get("prompt", "")))
        return {"error": "unknown_tool", "message": f"no tool named {name!r}"}

    async def _image(self, chat: dict[str, Any], call: dict[str, Any], prompt: str) -> Any:
        gen = AgentConfig.model_validate(chat["config"]).internal_tools.image_generation
        assert gen is not None
        if gen.app:
            spec = ToolSpec(name="image_generation", type="app", app=gen.app, setup=gen.setup, input=gen.input)
            return await self._app_tool(spec, {"prompt": prompt}, chat.get("api_key_id"), call)
        result = await self.gw.media.generate_image(ImageRequest(model=gen.model, prompt=prompt, **gen.input))
        images = []
        for image in result.images:
            if image.get("b64_json"):
                data, owner = base64.b64decode(image["b64_json"]), chat.get("api_key_id")
                record = await self.gw.files.put(data, "image.png", "image/png", api_key_id=owner)
                images.append({"uri": record.uri})
            elif image.get("url"):
                images.append({"url": image["url"]})
        return {"images": images, "model": result.model}

    async def _memory(self, chat: dict[str, Any], args: dict[str, Any]) -> Any:
        agent = chat["agent"] or f"chat:{chat['id']}"
        if agent and "@" in agent:
            agent = agent.split("@", 1)[0]
        user, action, key = chat["user"], args.get("action"), args.get("key")
        t = agent_memory.c
        where = sa.and_(t.agent == agent, t.user == user)
        async with self.gw.store.engine.begin() as conn:
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

    async def _load_skill(self, chat: dict[str, Any], name: str) -> Any:
        for skill in chat["config"].get("skills", []):
            if skill["name"] != name:
                continue
            if skill.get("content") is not None:
                return {"name": name, "content": skill["content"]}
            url = skill.get("url")
            if url:
                if url not in self._skill_cache:
                    await check_url(
                        url, allow_private=self.gw.config.webhooks.allow_private_webhooks, field="skill url"
                    )
                    async with httpx.AsyncClient(timeout=10) as http:
                        resp = await http.get(url)
                        resp.raise_for_status()
                        self._skill_cache[url] = resp.text
                return {"name": name, "content": self._skill_cache[url]}
        return {"error": "unknown_skill", "message": f"no skill named {name!r}"}

    async def _app_tool(
        self, spec: ToolSpec, args: dict[str, Any], api_key_id: str | None, call: dict[str, Any]
    ) -> Any:
        assert spec.app
        tasks = self.gw.tasks
        task = await tasks.create(spec.app, {**spec.input, **args}, setup=spec.setup or None, api_key_id=api_key_id)
        call["task_id"] = task["id"]
        deadline = time.monotonic() + spec.timeout_s * 6
        while True:
            done = await tasks.wait(task["id"], min(10.0, max(0.1, deadline - time.monotonic())))
            if done["status"] in ("completed", "failed", "cancelled") or time.monotonic() >= deadline:
                break
        if done["status"] == "completed":
            return done.get("output")
        return {"error": f"task_{done['status']}", "message": str(done.get("error") or done["status"])}

    async def _webhook_tool(self, spec: ToolSpec, args: dict[str, Any], call: dict[str, Any]) -> Any:
        assert spec.url
        url = await check_url(spec.url, allow_private=self.gw.config.webhooks.allow_private_webhooks, field="tool url")
        body = orjson.dumps({"tool": spec.name, "call_id": call["id"], "arguments": args})
        headers = {"Content-Type": "application/json"}
        if spec.secret:
            secret = self.gw.config.apps.secrets.get(spec.secret)
            if secret is None:
                return {"error": "secret_not_found", "message": f"secret {spec.secret!r} is not configured"}
            headers[SIGNATURE_HEADER] = sign(secret, body)
        async with httpx.AsyncClient(timeout=spec.timeout_s, follow_redirects=False) as http:
            resp = await http.post(url, content=body, headers=headers)
        if resp.status_code >= 400:
            return {"error": "webhook_failed", "status": resp.status_code, "message": resp.text[:500]}
        try:
            return resp.json()
        except ValueError:
            return resp.text

    async def _agent_tool(
        self, chat: dict[str, Any], spec: ToolSpec, args: dict[str, Any], call: dict[str, Any], api_key_id: str | None
    ) -> Any:
        assert spec.agent
        cfg = AgentConfig.model_validate(chat["config"])
        if chat["depth"] + 1 > cfg.max_depth:
            return {"error": "max_depth", "message": f"sub-agents nest at most {cfg.max_depth} deep"}
        sub = await self.create_chat(
            spec.agent, user=chat["user"], parent=chat["id"], depth=chat["depth"] + 1, api_key_id=chat.get("api_key_id")
        )
        call["sub_chat_id"] = sub["id"]
        text = args.get("message") or args.get("task") or orjson.dumps(args).decode()
        done = await self.send_message(sub["id"], str(text), api_key_id=api_key_id)
        if done["status"] != IDLE:
            return {"error": "sub_agent_" + done["status"], "sub_chat_id": sub["id"]}
        last = next((m for m in reversed(done["messages"]) if m["role"] == "assistant"), None)
        return {"sub_chat_id": sub["id"], "answer": last["content"] if last else None}


def _pause_status(calls: list[dict[str, Any]]) -> str:
    return AWAIT_APPROVAL if any(c["status"] == "awaiting_approval" for c in calls) else AWAIT_RESULT


def _pause_event(chat: dict[str, Any], calls: list[dict[str, Any]]) -> dict[str, Any]:
    pending = [_public_call(c) for c in calls if c["status"] != "done"]
    return {"type": chat["status"], "calls": pending}


def _public_call(call: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in call.items() if k != "raw_arguments"}


def _text(result: Any) -> str:
    return result if isinstance(result, str) else orjson.dumps(result).decode()


def _file_part(f: Any) -> dict[str, Any]:
    """An attachment as a content part: data URIs / URLs of images become image parts."""
    if isinstance(f, dict):
        uri = f.get("uri") or f.get("url") or f.get("data")
    else:
        uri = str(f)
    if isinstance(uri, str) and (uri.startswith("data:image/") or re.search(r"\.(png|jpe?g|gif|webp)$", uri)):
        return {"type": "image_url", "image_url": {"url": uri}}
    return {"type": "text", "text": f"[attached file: {str(uri)[:200]}]"}
