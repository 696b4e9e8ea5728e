"""What each block kind does, given the run it is part of (:class:`~runyard.workflows.engine.Run`)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ..errors import RunyardError
from ..files import File
from ..inference import ChatRequest
from ..services.ai import AIService
from ..services.files import FileService
from ..services.tasks import TaskRunner
from ..services.urlguard import Resolver, check_url, guarded_transport

if TYPE_CHECKING:
    from .engine import Run

__all__ = ["HANDLERS", "AgentChats", "BlockFailed", "BlockServices", "size"]

Span = dict[str, Any]


class BlockFailed(RunyardError):
    def __init__(self, block_id: str, message: str, code: str = "block_failed") -> None:
        super().__init__(f"block {block_id!r} failed: {message}", code=code, status=500)
        self.block_id = block_id


def size(value: Any) -> int:
    try:
        return len(orjson.dumps(value, default=str))
    except TypeError:
        return 0


@dataclass(frozen=True)
class BlockServices:
    """What blocks call: models, agents, apps (as tasks), files, and the rules they run under."""

    ai: AIService
    agents: AgentChats
    tasks: TaskRunner
    files: FileService | None
    modules: list[str]  # function blocks may import only these ([apps] modules)
    allow_private: bool  # http blocks may call private addresses
    resolver: Resolver | None = None  # how http blocks' hosts are looked up (None: the system's)


class AgentChats(Protocol):
    """Agent chats, as an ``agent`` block runs one."""

    async def create_chat(self, agent: str | dict[str, Any], *, api_key_id: str | None = None) -> dict[str, Any]: ...

    async def send_message(
        self, chat_id: str, text: str, *, emit: Any = None, api_key_id: str | None = None
    ) -> dict[str, Any]: ...


async def _input(run: Run, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
    declared = block.get("inputs") or {}
    out = dict(run.input)
    for name, tp in declared.items():
        spec = tp if isinstance(tp, dict) else {"type": tp}
        if name not in out:
            if "default" in spec:
                out[name] = spec["default"]
            elif spec.get("required", True):
                raise BlockFailed(block["id"], f"missing input {name!r}", "invalid_input")
        elif not _type_ok(out[name], spec.get("type", "any")):
            raise BlockFailed(block["id"], f"input {name!r} must be {spec.get('type')}", "invalid_input")
    span["input_size"] = size(out)
    return out


async def _output(run: Run, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
    outputs = run.render(block.get("outputs") or {}, ctx, block["id"])
    run.final = outputs
    return outputs


async def _function(run: Run, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
    target = block["function"]
    module_name, _, attr = target.partition(":")
    allowed = run.services.modules
    if module_name not in allowed:
        raise BlockFailed(block["id"], f"module {module_name!r} is not in [apps] modules", "function_not_allowed")
    fn = getattr(importlib.import_module(module_name), attr, None)
    if not callable(fn):
        raise BlockFailed(block["id"], f"{target} is not a callable", "function_not_found")
    args = run.render(block.get("args") or {}, ctx, block["id"])
    span["input_size"] = size(args)
    files = run.services.files
    if files is not None:  # parameters typed runyard.File get readable files
        args = await files.localize(_file_args(fn, args))
    if inspect.iscoroutinefunction(fn):
        value = await fn(**args)
    else:
        value = await asyncio.to_thread(lambda: fn(**args))
    if files is not None:  # File outputs are stored and become runyard://files/<id> refs
        value = _refs(await files.store_outputs(value, api_key_id=run.api_key_id))
    return value if isinstance(value, dict) else {"result": value}


async def _llm(run: Run, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
    bid = block["id"]
    messages = run.render(block.get("messages") or [], ctx, bid)
    if block.get("system"):
        messages.insert(0, {"role": "system", "content": run.render(block["system"], ctx, bid)})
    if block.get("prompt"):
        messages.append({"role": "user", "content": str(run.render(block["prompt"], ctx, bid))})
    body = {
        "model": block["model"],
        "messages": messages,
        "response_format": block.get("response_format"),
        "temperature": block.get("temperature"),
        "max_tokens": block.get("max_tokens"),
    }
    request = ChatRequest.model_validate({k: v for k, v in body.items() if v is not None})
    span["input_size"] = size(messages)
    ai = run.ctx.ai or run.services.ai
    wants_stream = run.stream and (not run.selected_blocks or bid in run.selected_blocks)
    if wants_stream:
        chat = await ai.open_stream(request)
        async for delta in chat:
            if delta.content:
                run.emit({"blockId": bid, "chunk": delta.content})
        result = chat.result
    else:
        result = await ai.chat(request)
    usage = result.usage
    tokens = {"prompt": usage.input_tokens, "completion": usage.output_tokens, "total": usage.total_tokens}
    span["tokens"] = tokens
    span["model"] = result.model
    out: dict[str, Any] = {"content": result.content, "model": result.model, "tokens": tokens}
    if block.get("response_format") and result.content:
        try:
            out["json"] = orjson.loads(result.content)
        except orjson.JSONDecodeError:
            out["json"] = None
    return out


async def _agent(run: Run, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
    """Run an agent (a template ref, or an inline config) on one message, to its final answer.

    The agent's tools run server-side; a chat that stops for a client tool result or an
    approval fails the block (``agent_awaiting``: nobody in a workflow run can answer)."""
    bid = block["id"]
    agents = run.services.agents
    spec = run.render(block["agent"], ctx, bid)
    message = str(run.render(block["message"], ctx, bid))
    span["input_size"] = size(message)
    chat = await agents.create_chat(spec if isinstance(spec, dict) else str(spec), api_key_id=run.api_key_id)
    span["children"] = [{"name": chat.get("agent") or "inline agent", "kind": "agent", "chat_id": chat["id"]}]
    wants_stream = run.stream and (not run.selected_blocks or bid in run.selected_blocks)

    async def emit(event: dict[str, Any]) -> None:
        if wants_stream and event.get("type") == "delta" and event.get("content"):
            run.emit({"blockId": bid, "chunk": event["content"]})

    done = await agents.send_message(chat["id"], message, emit=emit, api_key_id=run.api_key_id)
    status = done["status"]
    span["children"][0]["status"] = status
    if status != "idle":
        raise BlockFailed(bid, f"agent chat {chat['id']} stopped: {status}", "agent_" + status)
    answer = next((m for m in reversed(done["messages"]) if m["role"] == "assistant"), None)
    content = answer.get("content") if answer else None
    return {"content": content, "chat_id": chat["id"], "steps": len(done.get("steps") or [])}


async def _condition(run: Run, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
    value = bool(run.expr(block["if"], ctx, block["id"]))
    chosen = [str(x) for x in (block.get("then") if value else block.get("else")) or []]
    if isinstance(block.get("then" if value else "else"), str):
        chosen = [str(block.get("then" if value else "else"))]
    run.chosen[block["id"]] = set(chosen)
    return {"result": value, "selected": chosen}


async def _router(run: Run, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
    chosen: list[str] = []
    for i, route in enumerate(block.get("routes") or []):
        if run.expr(route["when"], ctx, block["id"]):
            to = route.get("to")
            chosen = [str(to)] if isinstance(to, str | int) else [str(t) for t in to or []]
            run.chosen[block["id"]] = set(chosen)
            return {"route": i, "selected": chosen}
    default = block.get("default")
    chosen = [str(default)] if isinstance(default, str | int) else [str(t) for t in default or []]
    run.chosen[block["id"]] = set(chosen)
    return {"route": None, "selected": chosen}


async def _map(run: Run, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
    bid = block["id"]
    items = run.expr(block["over"], ctx, bid)
    if not isinstance(items, list | tuple):
        raise BlockFailed(bid, f"'over' must give a list, got {type(items).__name__}", "type_mismatch")
    inner = {**block["block"], "id": block["block"].get("id", f"{bid}.item")}
    semaphore = asyncio.Semaphore(int(block.get("concurrency", 4)))
    children: list[dict[str, Any]] = []

    async def one(index: int, item: Any) -> Any:
        async with semaphore:
            child_ctx = {**ctx, "item": item, "index": index}
            child = {"blockId": f"{bid}[{index}]", "name": f"{bid}[{index}]", "kind": inner["kind"]}
            return await run.with_policy(inner, child, lambda: run.dispatch(inner, child_ctx, child), spans=children)

    results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    children.sort(key=lambda s: int(s["blockId"].rpartition("[")[2].rstrip("]")))
    span["children"] = children
    span["input_size"] = size(items)
    return {"results": list(results), "count": len(results)}


async def _app(run: Run, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
    tasks = run.services.tasks
    payload = run.render(block.get("input") or {}, ctx, block["id"])
    span["input_size"] = size(payload)
    task = await tasks.create(str(run.render(block["app"], ctx, block["id"])), payload)
    span["children"] = [{"name": task["app"], "kind": "task", "task_id": task["id"]}]
    timeout = float(block.get("timeout") or 300)
    done = await tasks.wait(task["id"], timeout)
    span["children"][0]["status"] = done["status"]
    if done["status"] != "completed":
        message = (done.get("error") or {}).get("message") or done["status"]
        raise BlockFailed(block["id"], f"app {task['app']} {done['status']}: {message}", "app_failed")
    output = done["output"]
    return output if isinstance(output, dict) else {"result": output}


async def _http(run: Run, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
    bid = block["id"]
    url = str(run.render(block["url"], ctx, bid))
    allow_private, resolver = run.services.allow_private, run.services.resolver
    await check_url(url, allow_private=allow_private, field="url", resolver=resolver)
    method = str(block.get("method", "GET")).upper()
    headers = {str(k): str(v) for k, v in run.render(block.get("headers") or {}, ctx, bid).items()}
    body = run.render(block.get("body"), ctx, bid) if "body" in block else None
    span["input_size"] = size(body)
    transport = guarded_transport(allow_private=allow_private, resolver=resolver)  # connects to the checked address
    timeout = float(block.get("timeout") or 30)
    import httpx  # on first use: 7 MB a gateway without http blocks never loads

    async with httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False) as client:
        response = await client.request(method, url, headers=headers, json=body)
    try:
        data: Any = response.json()
    except ValueError:
        data = response.text
    if response.status_code >= 400 and not block.get("allow_errors"):
        raise BlockFailed(bid, f"{method} {url} answered {response.status_code}", "http_error")
    return {"status": response.status_code, "headers": dict(response.headers), "body": data}


Handler = Callable[["Run", dict[str, Any], dict[str, Any], Span], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {
    "input": _input,
    "output": _output,
    "function": _function,
    "llm": _llm,
    "agent": _agent,
    "condition": _condition,
    "router": _router,
    "map": _map,
    "app": _app,
    "http": _http,
}


def _refs(value: Any) -> Any:
    if isinstance(value, File):
        return value.uri
    if isinstance(value, dict):
        return {k: _refs(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_refs(v) for v in value]
    return value


def _file_args(fn: Callable[..., Any], args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with the refs passed to parameters annotated ``File`` (``File | None``,
    ``list[File]``) turned into :class:`File` objects (still to be localized)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: pass the values as they are
        return args
    out = dict(args)
    for name, value in args.items():
        shape = _file_shape(hints.get(name))
        if shape == "one" and isinstance(value, str):
            out[name] = File(value)
        elif shape == "many" and isinstance(value, list):
            out[name] = [File(v) if isinstance(v, str) else v for v in value]
    return out


def _file_shape(hint: Any) -> str | None:
    """``"one"`` for ``File``, ``"many"`` for ``list[File]`` (either ``| None``), else ``None``."""
    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if hint is File:
        return "one"
    if origin is list and params and params[0] is File:
        return "many"
    if origin in (typing.Union, types.UnionType):
        shapes = {_file_shape(p) for p in params if p is not type(None)}
        return shapes.pop() if len(shapes) == 1 else None
    return None


def _type_ok(value: Any, tp: str) -> bool:
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "file": lambda v: isinstance(v, str | dict | File),  # submit stores them: runyard://files/<id>
    }
    check = checks.get(tp)
    return check is None or check(value)
