"""inference.sh's wire protocol as plain functions: tasks, chats and tool invocations in its
shapes, an ``agent_config`` as ours, and its upload URIs as our file refs. The HTTP handlers (and
the adapter's run state) are server/routes/inferencesh.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ...errors import InvalidRequestError, NotFoundError

log = logging.getLogger("runyard.inferencesh")

STATUS = {"queued": 2, "processing": 7, "completed": 10, "failed": 11, "cancelled": 12}
TERMINAL = {10, 11, 12, 13}
UPLOAD_SCHEME = "inferencesh-upload://"


def task_dto(task: dict[str, Any]) -> dict[str, Any]:
    """A task in inference.sh's shape (numeric status)."""
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


def pool_for(infra: Any, pools: dict[str, int]) -> str | None:
    """The pool an ``infra`` choice runs in: ``cloud`` / ``private`` name a pool of that name when
    one is configured (``[pools.private]``), else the app's own; anything else is 422 ``invalid_infra``."""
    if infra is None:
        return None
    if infra not in ("cloud", "private"):
        raise InvalidRequestError(f"infra must be 'cloud' or 'private', not {infra!r}", code="invalid_infra")
    return infra if infra in pools else None


def rewrite_uploads(value: Any, uploads: dict[str, dict[str, Any]]) -> Any:
    """``inferencesh-upload://<token>`` URIs of finished uploads → ``runyard://files/<id>`` refs."""
    if isinstance(value, str) and value.startswith(UPLOAD_SCHEME):
        entry = uploads.get(value.removeprefix(UPLOAD_SCHEME))
        if entry and entry.get("file_id"):
            return f"runyard://files/{entry['file_id']}"
    if isinstance(value, dict):
        return {k: rewrite_uploads(v, uploads) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_uploads(v, uploads) for v in value]
    return value


AppSchema = Callable[[str], dict[str, Any]]
AGENT_PARAMS = {  # 0.36 sends an agent tool without parameters: the sub-agent gets one message
    "type": "object",
    "properties": {"message": {"type": "string", "description": "what to ask the agent"}},
    "required": ["message"],
}
TOOL_KINDS = {"client": "client", "app": "app", "agent": "agent", "hook": "webhook", "webhook": "webhook"}


def agent_config(
    cfg: dict[str, Any], *, app_schema: AppSchema, web_search: bool = False, image_model: str | None = None
) -> dict[str, Any]:
    """An inference.sh ``agent_config`` as ours. ``app_schema(ref)``: an app's input schema (app
    tools sent without parameters take theirs from it); ``web_search``: a search provider is
    configured (else the tool is dropped, and logged); ``image_model``: what ``image_generation``
    without an ``app_ref`` uses."""
    core = cfg.get("core_app") or {}
    tools = [_tool(t, app_schema) for t in cfg.get("tools") or [] if isinstance(t, dict)]
    internal = cfg.get("internal_tools") or {}
    ours: dict[str, Any] = {k: bool(internal.get(k)) for k in ("plan", "memory", "code_execution") if k in internal}
    if internal.get("web_search"):
        if web_search:
            ours["web_search"] = True
        else:
            log.warning(
                "agent_config asks for web_search, but no [agents.web_search] provider is configured: not offered"
            )
    gen = internal.get("image_generation")
    if gen is True or (isinstance(gen, dict) and gen.get("enabled", True)):
        gen = gen if isinstance(gen, dict) else {}
        app_ref = gen.get("app_ref") or gen.get("app")
        ours["image_generation"] = {"app": app_ref} if app_ref else {"model": gen.get("model") or image_model}
    out: dict[str, Any] = {
        "model": cfg.get("model") or core.get("ref"),
        "system_prompt": cfg.get("system_prompt") or "",
        "tools": tools,
        "internal_tools": ours,
        "skills": [s for s in cfg.get("skills") or [] if isinstance(s, dict) and "name" in s],
    }
    for key in ("temperature", "max_tokens"):
        if cfg.get(key) is not None:
            out[key] = cfg[key]
    return out


def _tool(t: dict[str, Any], app_schema: AppSchema) -> dict[str, Any]:
    """One inference.sh tool definition as our ToolSpec fields (unknown kinds stay client tools)."""
    kind = str(t.get("type") or "client")
    spec: dict[str, Any] = {
        "name": t.get("name"),
        "description": t.get("description") or "",
        "require_approval": bool(t.get("require_approval")),
        "type": TOOL_KINDS.get(kind, "client"),
    }
    raw = t.get(kind)
    body: dict[str, Any] = raw if isinstance(raw, dict) else {}
    schema = body.get("input_schema")
    if spec["type"] == "app":
        setup, fixed = body.get("setup") or {}, body.get("input") or {}
        spec.update(app=body.get("ref"), setup=setup, input=fixed)
        if not schema and isinstance(body.get("ref"), str):
            schema = open_params(app_schema(body["ref"]), {*fixed, *setup})
    elif spec["type"] == "agent":
        spec["agent"] = body.get("ref")
        schema = schema or AGENT_PARAMS
    elif spec["type"] == "webhook":
        spec.update(url=body.get("url"), secret=body.get("secret"))
    spec["parameters"] = schema or {"type": "object", "properties": {}}
    return spec


def open_params(schema: dict[str, Any], hidden: set[str]) -> dict[str, Any]:
    """An app's input schema as a tool's parameters: the ``hidden`` keys (fixed by ``.input()``,
    given by ``.setup()``) taken out of its properties and ``required``."""
    props = {k: v for k, v in (schema.get("properties") or {}).items() if k not in hidden}
    out: dict[str, Any] = {"type": "object", "properties": props}
    required = [r for r in schema.get("required") or [] if r not in hidden]
    if required:
        out["required"] = required
    if schema.get("$defs"):
        out["$defs"] = schema["$defs"]
    return out


def invocation_id(chat_id: str, call: dict[str, Any]) -> str:
    """A tool invocation's id: chat, step and call, joined by ``~``."""
    return f"{chat_id}~{call['step']}~{call['id']}"


def chat_message(chat: dict[str, Any]) -> dict[str, Any]:
    """The chat's last assistant message, with the tool invocations of its last step."""
    last = next((m for m in reversed(chat["messages"]) if m["role"] == "assistant"), None)
    text = last.get("content") if last else None
    invocations = [
        {
            "id": invocation_id(chat["id"], c),
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


def chat_dto(chat: dict[str, Any]) -> dict[str, Any]:
    """A chat in inference.sh's shape, with its pending tool approvals as interrupts."""
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
                "id": f"int-{invocation_id(chat['id'], c)}",
                "reason": "tool_approval",
                "status": "pending",
                "chat_id": chat["id"],
                "resource_id": invocation_id(chat["id"], c),
                "meta": {
                    "tool_invocation_id": invocation_id(chat["id"], c),
                    "tool_name": c["name"],
                    "arguments": c["arguments"],
                },
            }
            for c in chat["tool_calls"]
            if c["status"] == "awaiting_approval"
        ],
    }


def split_invocation(inv_id: str) -> tuple[str, str]:
    """(chat id, tool call id) of an invocation id; 404 ``unknown_tool_call`` for anything else."""
    parts = inv_id.split("~", 2)
    if len(parts) != 3:
        raise NotFoundError(f"unknown tool invocation {inv_id!r}", code="unknown_tool_call")
    return parts[0], parts[2]
