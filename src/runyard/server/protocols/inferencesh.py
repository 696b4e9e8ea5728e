"""inference.sh's wire protocol as plain functions: tasks, chats and tool invocations in its
shapes, an ``agent_config`` as ours, and its upload URIs as our file refs. The HTTP handlers (and
the adapter's run state) are server/routes/inferencesh.py.
"""

from __future__ import annotations

from typing import Any

from ...errors import NotFoundError

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
