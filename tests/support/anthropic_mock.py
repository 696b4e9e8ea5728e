"""A mock Anthropic Messages API upstream: a real aiohttp HTTP server on 127.0.0.1.

Same design as :class:`support.openai_mock.MockOpenAI` (both are
:class:`support.mock_server.ThreadedMockServer`): the server runs in a background thread
with its own event loop (usable from sync and async tests alike), and it shares the
behaviours of :mod:`support.mock_server` (``B.status``, ``B.hang``, ``B.delay``,
``B.drop_mid_stream``, ``B.malformed``, ``B.reply``), to which this module's ``B`` adds
raw replies::

    mock = MockAnthropic().start()
    mock.url                      # "http://127.0.0.1:PORT" (clients append /v1/messages)
    mock.script(B.status(529), B.reply("hi"), B.json(message_dict), B.sse(events))
    ...                           # one behaviour per accepted request, FIFO, then the defaults
    mock.requests                 # [{"method", "path", "headers" (lower-case), "json"}, ...]
    mock.bodies                   # [request["json"] for each request]
    mock.stop()

Route: ``POST /v1/messages`` (JSON or, with ``"stream": true``, SSE). Every request is
recorded. Like the real API, a request is first checked: a missing/wrong ``x-api-key``
(any non-empty key passes unless ``api_key`` is given) answers 401, a missing/unknown
``anthropic-version`` 400, and a body the real API would reject (see :func:`check_body`:
``model`` and ``max_tokens`` required, known top-level fields only, ``temperature``/``top_p``
in [0, 1], no whitespace-only ``stop_sequences``, user-first alternating turns, non-empty
content and text blocks, valid image sources, ``tool_use`` only in assistant turns and each
answered by a ``tool_result`` at the start of the next user turn, tool names
``^[a-zA-Z0-9_-]{1,64}$`` and unique, object input schemas, ``tool_choice`` only with tools
and naming a known one...) 400 ``invalid_request_error``. Rejected
requests and unknown routes (404) do *not* consume a scripted behaviour.

Default answer, in order of precedence:

1. ``tool_choice`` ``{"type": "tool", "name": N}``: a ``tool_use`` of ``N`` whose input fills
   the tool's ``input_schema`` required properties with typed placeholders (string "x",
   integer 1, number 1.0, boolean true, array [], object {} or its own required properties,
   enum -> first value). This is what a forced tool (e.g. the provider's ``json_schema``
   emulation) gets.
2. ``tools`` present, ``tool_choice`` not ``none`` and the last user turn holds no
   ``tool_result``: a ``tool_use`` (id ``toolu_mock_1``) of the first tool, input
   ``{"<first required string property>": "Paris"}`` (or ``{}``).
3. the last user turn holds ``tool_result`` blocks: ``"tool said: <content>"`` (several
   results joined with ``"; "``).
4. the system prompt asks for a "JSON object": ``{"ok": true}``.
5. otherwise ``"echo: <text of the last user turn>"``.

``stop_reason`` is ``tool_use`` with a tool_use block, else ``end_turn``. Usage counts are
whitespace-separated words (at least 1): ``input_tokens`` over the system prompt and every
text / tool_result / tool_use input, ``output_tokens`` over the answer (text and tool
inputs' JSON); cache counts are 0. Streams are realistic: ``message_start``, ``ping``, per
block ``content_block_start`` / ``content_block_delta`` (``text_delta`` per word,
``input_json_delta`` in pieces after an empty one) / ``content_block_stop``, then
``message_delta`` (stop_reason, output usage) and ``message_stop``.

Behaviours on this mock: ``B.status(code, body, headers)`` (body None -> an
Anthropic-shaped error), ``B.hang``/``B.delay`` (then the normal answer),
``B.drop_mid_stream(n)`` (stream: events up to the ``n``-th ``content_block_delta``, then
the connection closes; JSON: half the body), ``B.malformed()`` (``{not json``, as a body or
as a ``message_start`` event), ``B.reply(content, tool_calls, finish_reason, usage)`` (a
fixed answer, stream or not; ``tool_calls`` items ``{"name", "input" | "arguments", "id"?}``
or OpenAI-shaped; ``finish_reason`` an Anthropic ``stop_reason`` or its OpenAI name;
``usage`` Anthropic keys, or ``prompt_tokens``/``completion_tokens``), and the raw ones
``B.json(data, status, headers)`` / ``json_reply``, ``B.raw(body, status, content_type)`` /
``raw_reply`` and ``B.sse(events, drop, raw_tail)`` / ``sse_reply`` (each event dict is sent
as ``event: <type>`` + ``data: <json>``, whatever the request's ``stream`` flag).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from support.mock_server import (
    DISCONNECTED,
    Behaviour,
    Delay,
    DropMidStream,
    Hang,
    Malformed,
    Reply,
    Status,
    ThreadedMockServer,
    object_for,
    split_n,
    split_words,
)
from support.mock_server import B as _SharedB

__all__ = [
    "API_VERSIONS",
    "B",
    "Behaviour",
    "Delay",
    "DropMidStream",
    "Hang",
    "Malformed",
    "MockAnthropic",
    "Reply",
    "Sse",
    "Status",
    "check_body",
    "json_reply",
    "raw_reply",
    "sse_reply",
]

API_VERSIONS = frozenset({"2023-06-01", "2023-01-01"})
DEFAULT_MODEL = "claude-mock"
TOOL_USE_ID = "toolu_mock_1"

# Top-level fields the Messages API accepts; anything else is "Extra inputs are not permitted".
ALLOWED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
    }
)
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_OPENAI_FINISH = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens", "content_filter": "refusal"}


# --------------------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Sse(Behaviour):
    """200 ``text/event-stream``: each event as ``event: <type>\\ndata: <json>\\n\\n``, then
    ``raw_tail`` as is; ``drop`` closes the connection instead of ending the body cleanly."""

    events: tuple[dict[str, Any], ...]
    drop: bool = False
    raw_tail: bytes = b""


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Status:
    """Answer ``data`` as JSON with HTTP ``status`` (a message, an error object, anything)."""
    if isinstance(data, (dict, list)):
        return Status(status, data, headers)
    return Status(status, json.dumps(data), {**(headers or {}), "Content-Type": "application/json"})


def raw_reply(body: bytes | str, status: int = 200, content_type: str = "application/json") -> Status:
    """Answer ``body`` byte for byte, with this Content-Type."""
    return Status(status, body.encode() if isinstance(body, str) else bytes(body), {"Content-Type": content_type})


def sse_reply(events: Iterable[dict[str, Any]], drop: bool = False, raw_tail: bytes = b"") -> Sse:
    """Stream ``events`` as SSE; ``drop`` closes the connection mid-body (no chunked terminator)."""
    return Sse(tuple(events), drop, raw_tail)


class B(_SharedB):
    """The shared behaviour factory (``status``, ``hang``, ``delay``, ``drop_mid_stream``,
    ``malformed``, ``reply``) plus raw replies: ``json``, ``raw``, ``sse``."""

    json = staticmethod(json_reply)
    raw = staticmethod(raw_reply)
    sse = staticmethod(sse_reply)


# --------------------------------------------------------------------------- validation


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_blocks_text(blocks: Any, where: str, problems: list[str]) -> None:
    if not isinstance(blocks, list) or not blocks:
        problems.append(f"{where}: must be a non-empty list of text blocks")
        return
    for j, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "text" or not block.get("text"):
            problems.append(f"{where}.{j}: must be a non-empty text block")


def _check_image(block: dict[str, Any], where: str, problems: list[str]) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        problems.append(f"{where}.source: required")
    elif source.get("type") == "base64":
        if source.get("media_type") not in _IMAGE_TYPES:
            problems.append(f"{where}.source.media_type: must be one of {sorted(_IMAGE_TYPES)}")
        if not isinstance(source.get("data"), str) or not source["data"]:
            problems.append(f"{where}.source.data: required")
    elif source.get("type") == "url":
        if not isinstance(source.get("url"), str) or not source["url"].startswith(("http://", "https://")):
            problems.append(f"{where}.source.url: must be an http(s) URL")
    else:
        problems.append(f"{where}.source.type: must be 'base64' or 'url'")


def check_body(body: Any) -> list[str]:
    """What the real Messages API would reject in this request body (empty: accepted)."""
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]
    problems = [f"{k}: Extra inputs are not permitted" for k in sorted(body.keys() - ALLOWED_FIELDS)]
    if not isinstance(body.get("model"), str) or not body["model"]:
        problems.append("model: required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        problems.append("max_tokens: required")
    for name in ("temperature", "top_p"):
        if name in body and not (_is_number(body[name]) and 0 <= body[name] <= 1):
            problems.append(f"{name}: must be a number between 0 and 1")
    if "top_k" in body and not (isinstance(body["top_k"], int) and not isinstance(body["top_k"], bool)):
        problems.append("top_k: must be an integer")
    if "stream" in body and not isinstance(body["stream"], bool):
        problems.append("stream: must be a boolean")
    if "stop_sequences" in body:
        stops = body["stop_sequences"]
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            problems.append("stop_sequences: must be a list of strings")
        elif not all(s.strip() for s in stops):
            problems.append("stop_sequences: each stop sequence must contain non-whitespace")
    if "metadata" in body:
        meta = body["metadata"]
        if not isinstance(meta, dict) or set(meta) - {"user_id"} or not isinstance(meta.get("user_id", ""), str):
            problems.append("metadata: only a string user_id is accepted")
    if "system" in body:
        if isinstance(body["system"], list):
            _check_blocks_text(body["system"], "system", problems)
        elif not isinstance(body["system"], str):
            problems.append("system: must be a string or text blocks")

    tool_names: list[str] = []
    tools = body.get("tools")
    if "tools" in body and not isinstance(tools, list):
        problems.append("tools: must be a list")
        tools = []
    for t, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            problems.append(f"tools.{t}: must be an object")
            continue
        if set(tool) - {"name", "description", "input_schema", "cache_control"}:
            problems.append(f"tools.{t}: bad tool {tool}")
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            problems.append(f"tools.{t}.name: must match ^[a-zA-Z0-9_-]{{1,64}}$")
        elif name in tool_names:
            problems.append("tools: Tool names must be unique")
        else:
            tool_names.append(name)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            problems.append(f"tools.{t}.input_schema: must be a JSON schema of type object")
    if "tool_choice" in body:
        choice = body["tool_choice"]
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind not in ("auto", "any", "tool", "none"):
            problems.append("tool_choice.type: must be one of auto, any, tool, none")
        elif set(choice) - {"type", "name", "disable_parallel_tool_use"}:
            problems.append("tool_choice: Extra inputs are not permitted")
        elif not tools:
            problems.append("tool_choice: may only be specified while providing tools")
        elif kind == "tool" and choice.get("name") not in tool_names:
            problems.append(f"tool_choice.name: no tool named {choice.get('name')!r}")

    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not isinstance(messages[0], dict)
        or messages[0].get("role") != "user"
    ):
        return [*problems, "messages: must start with a user turn"]
    pending_ids: set[str] = set()  # tool_use ids of the previous assistant turn
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            problems.append(f"messages.{i}: must be an object")
            continue
        role, content = msg.get("role"), msg.get("content")
        if set(msg) - {"role", "content"}:
            problems.append(f"messages.{i}: Extra inputs are not permitted: {sorted(set(msg) - {'role', 'content'})}")
        if role not in ("user", "assistant"):
            problems.append(f"messages.{i}.role: unexpected {role!r}")
        if i and isinstance(messages[i - 1], dict) and messages[i - 1].get("role") == role:
            problems.append(f"messages.{i}: roles must alternate")
        if not content or not isinstance(content, (str, list)):
            problems.append(f"messages.{i}.content: must be non-empty")
        blocks = content if isinstance(content, list) else []
        answered: set[str] = set()
        use_ids: set[str] = set()
        seen_other = False
        for j, block in enumerate(blocks):
            where = f"messages.{i}.content.{j}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                if not isinstance(block.get("text"), str) or not block["text"]:
                    problems.append(f"{where}: text content blocks must be non-empty")
                seen_other = True
            elif kind == "image":
                if role != "user":
                    problems.append(f"{where}: image blocks are only allowed in user turns")
                _check_image(block, where, problems)
                seen_other = True
            elif kind == "tool_use":
                if (
                    role != "assistant"
                    or not isinstance(block.get("id"), str)
                    or not isinstance(block.get("name"), str)
                    or not isinstance(block.get("input"), dict)
                ):
                    problems.append(f"messages.{i}: bad tool_use block")
                else:
                    use_ids.add(block["id"])
            elif kind == "tool_result":
                tool_use_id = block.get("tool_use_id")
                if role != "user" or tool_use_id not in pending_ids:
                    problems.append(
                        f"messages.{i}: tool_result answers no tool_use of the previous turn "
                        f"(unexpected tool_use_id {tool_use_id!r})"
                    )
                if seen_other:
                    problems.append(f"messages.{i}: tool_result blocks must come first in the user turn")
                result = block.get("content", "")
                if not isinstance(result, (str, list)):
                    problems.append(f"{where}.content: must be a string or content blocks")
                answered.add(str(tool_use_id))
            elif kind in ("document", "thinking", "redacted_thinking"):
                seen_other = True
            else:
                problems.append(f"messages.{i}: unknown block type {kind!r}")
        if role == "user" and pending_ids - answered:
            problems.append(
                f"messages.{i}: tool_use ids were found without tool_result blocks immediately after: "
                + ", ".join(sorted(pending_ids - answered))
            )
        pending_ids = use_ids if role == "assistant" else set()
    return problems


# --------------------------------------------------------------------------- answers


def _text_of(content: Any) -> str:
    """Text of a content: a string, or the text blocks of a block list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text")
        return "".join(t for t in texts if isinstance(t, str))
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _prompt_tokens(body: dict[str, Any]) -> int:
    n = _words(_text_of(body.get("system")))
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            n += _words(content)
            continue
        for block in content if isinstance(content, list) else ():
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                n += _words(block.get("text") or "")
            elif kind == "tool_result":
                n += _words(_text_of(block.get("content")))
            elif kind == "tool_use":
                n += _words(json.dumps(block.get("input") or {}))
    return max(1, n)


def _completion_tokens(blocks: list[dict[str, Any]]) -> int:
    n = 0
    for block in blocks:
        if block["type"] == "text":
            n += _words(block["text"])
        elif block["type"] == "tool_use":
            n += _words(json.dumps(block["input"]))
    return max(1, n)


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _paris_input(tool: dict[str, Any]) -> dict[str, Any]:
    schema = tool.get("input_schema") or {}
    props = schema.get("properties") or {}
    for name in schema.get("required") or ():
        typ = (props.get(name) or {}).get("type")
        if typ == "string" or (isinstance(typ, list) and "string" in typ):
            return {name: "Paris"}
    return {}


def _tool_use(name: str, arguments: Any, tool_id: str) -> dict[str, Any]:
    if isinstance(arguments, str):
        arguments = json.loads(arguments) if arguments.strip() else {}
    return {"type": "tool_use", "id": tool_id, "name": name, "input": dict(arguments or {})}


@dataclass
class _Answer:
    blocks: list[dict[str, Any]]
    stop_reason: str
    usage: dict[str, int]


def _reply_answer(reply: Reply, prompt_tokens: int) -> _Answer:
    blocks: list[dict[str, Any]] = []
    if reply.content is not None:
        blocks.append({"type": "text", "text": reply.content})
    for i, call in enumerate(reply.tool_calls or ()):
        call_id = call.get("id") or f"toolu_mock_{i + 1}"
        if "function" in call:
            fn = call["function"]
            blocks.append(_tool_use(fn["name"], fn.get("arguments"), call_id))
        else:
            blocks.append(_tool_use(call["name"], call.get("input", call.get("arguments")), call_id))
    finish = reply.finish_reason
    stop = _OPENAI_FINISH.get(finish, finish) if finish else ("tool_use" if reply.tool_calls else "end_turn")
    usage = _usage(prompt_tokens, _completion_tokens(blocks))
    if reply.usage:
        extra = dict(reply.usage)
        if "prompt_tokens" in extra:
            usage["input_tokens"] = extra.pop("prompt_tokens")
        if "completion_tokens" in extra:
            usage["output_tokens"] = extra.pop("completion_tokens")
        extra.pop("total_tokens", None)
        usage.update(extra)
    return _Answer(blocks, stop, usage)


def _default_answer(body: dict[str, Any]) -> _Answer:
    prompt_tokens = _prompt_tokens(body)
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    user_content = last_user.get("content")
    results = (
        [b for b in user_content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if isinstance(user_content, list)
        else []
    )

    blocks: list[dict[str, Any]]
    if choice.get("type") == "tool":
        tool = next((t for t in tools if t.get("name") == choice.get("name")), tools[0] if tools else {})
        blocks = [_tool_use(str(tool.get("name", "")), object_for(tool.get("input_schema") or {}), TOOL_USE_ID)]
    elif tools and choice.get("type") != "none" and not results:
        blocks = [_tool_use(str(tools[0].get("name", "")), _paris_input(tools[0]), TOOL_USE_ID)]
    elif results:
        blocks = [{"type": "text", "text": "tool said: " + "; ".join(_text_of(r.get("content")) for r in results)}]
    elif "json object" in _text_of(body.get("system")).lower():
        blocks = [{"type": "text", "text": json.dumps({"ok": True})}]
    else:
        blocks = [{"type": "text", "text": "echo: " + _text_of(user_content)}]
    stop = "tool_use" if blocks[0]["type"] == "tool_use" else "end_turn"
    return _Answer(blocks, stop, _usage(prompt_tokens, _completion_tokens(blocks)))


_ERRORS = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Permission denied"),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes"),
    429: ("rate_limit_error", "Rate limited"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def _error_body(code: int, message: str | None = None) -> dict[str, Any]:
    """An Anthropic error object: ``{"type": "error", "error": {"type", "message"}}``."""
    kind, default = _ERRORS.get(code, ("api_error" if code >= 500 else "invalid_request_error", ""))
    return {"type": "error", "error": {"type": kind, "message": message or default or f"mock upstream error {code}"}}


def _sse_event(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def _stream_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The SSE events (dicts) of a full Messages stream for this final message."""
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**message["usage"], "output_tokens": 1}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for i, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            head = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [{"type": "input_json_delta", "partial_json": p} for p in split_n(json.dumps(block["input"]), 3)]
        else:
            head = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in split_words(block["text"])] if block["text"] else []
        events.append({"type": "content_block_start", "index": i, "content_block": head})
        events += [{"type": "content_block_delta", "index": i, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": i})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        }
    )
    events.append({"type": "message_stop"})
    return events


# --------------------------------------------------------------------------- server


class MockAnthropic(ThreadedMockServer):
    """Mock Anthropic Messages API upstream; see the module docstring.

    ``api_key``: the only ``x-api-key`` accepted (None: any non-empty key);
    ``validate``: check request bodies like the real API (:func:`check_body`).
    """

    url_suffix = ""
    thread_name = "mock-anthropic"
    _error_body = staticmethod(_error_body)

    def __init__(self, api_key: str | None = None, validate: bool = True) -> None:
        super().__init__()
        self.api_key = api_key
        self.validate = validate

    @property
    def bodies(self) -> list[Any]:
        """The JSON body of every request received, in order."""
        with self._lock:
            return [r["json"] for r in self.requests]

    # ---- request handling

    def _reject(self, request: web.Request, body: Any, parsed: bool) -> web.Response | None:
        """The error the real API would answer before doing anything, if any."""
        if request.path.rstrip("/") != "/v1/messages" or request.method != "POST":
            return web.json_response(_error_body(404, f"no route {request.method} {request.path}"), status=404)
        key = request.headers.get("x-api-key")
        if not key or (self.api_key is not None and key != self.api_key):
            return web.json_response(_error_body(401, "invalid x-api-key"), status=401)
        if request.headers.get("anthropic-version") not in API_VERSIONS:
            return web.json_response(
                _error_body(400, "anthropic-version: header is required (e.g. 2023-06-01)"), status=400
            )
        if not parsed:
            return web.json_response(_error_body(400, "request body is not valid JSON"), status=400)
        if self.validate:
            problems = check_body(body)
            if problems:
                return web.json_response(_error_body(400, "; ".join(problems)), status=400)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        parsed = True
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            parsed = False
        rejection = self._reject(request, body, parsed)
        behaviour, seq = self._record(request, body, consume=rejection is None)
        if rejection is not None:
            return rejection

        if isinstance(behaviour, Status):
            return self._status_response(behaviour)
        if isinstance(behaviour, (Hang, Delay)):
            await self._sleep(behaviour.seconds)
            behaviour = None
        if isinstance(behaviour, Sse):
            events = [_sse_event(e) for e in behaviour.events]
            if behaviour.raw_tail:
                events.append(behaviour.raw_tail)
            return await self._sse(request, events, drop=behaviour.drop)

        body = body if isinstance(body, dict) else {}
        stream = bool(body.get("stream"))
        if isinstance(behaviour, Malformed):
            if stream:
                return await self._sse(request, [b"event: message_start\ndata: {not json\n\n"])
            return web.Response(status=200, body=b"{not json", content_type="application/json")

        answer = (
            _reply_answer(behaviour, _prompt_tokens(body)) if isinstance(behaviour, Reply) else _default_answer(body)
        )
        message = {
            "id": f"msg_mock_{seq}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or DEFAULT_MODEL,
            "content": answer.blocks,
            "stop_reason": answer.stop_reason,
            "stop_sequence": None,
            "usage": answer.usage,
        }
        if not stream:
            resp = web.json_response(message)
            if isinstance(behaviour, DropMidStream):
                return await self._drop_body(request, resp)
            return resp

        events = _stream_events(message)
        if isinstance(behaviour, DropMidStream):
            kept: list[dict[str, Any]] = []
            deltas = 0
            for event in events:
                if event["type"] in ("message_delta", "message_stop"):
                    break
                if event["type"] == "content_block_delta":
                    if deltas >= behaviour.after_chunks:
                        break
                    deltas += 1
                kept.append(event)
            return await self._sse(request, [_sse_event(e) for e in kept], drop=True)
        return await self._sse(request, [_sse_event(e) for e in events])

    async def _sse(self, request: web.Request, events: list[bytes], drop: bool = False) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"},
        )
        try:
            await resp.prepare(request)
            for event in events:
                await resp.write(event)
                await asyncio.sleep(0)  # let each event go out as its own chunk
            if drop:
                self._hang_up(request)
                raise web.HTTPException()  # aiohttp drops the half-sent response quietly
            await resp.write_eof()
        except DISCONNECTED:
            pass
        return resp

    async def _drop_body(self, request: web.Request, full: web.Response) -> web.StreamResponse:
        """Send the status line, headers (with the full Content-Length) and half the body, then
        close the connection."""
        data = full.body if isinstance(full.body, bytes) else b""
        resp = web.StreamResponse(status=full.status, headers={"Content-Type": full.content_type})
        resp.content_length = len(data)
        try:
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            self._hang_up(request)
            raise web.HTTPException()
        except DISCONNECTED:
            pass
        return resp

    @staticmethod
    def _hang_up(request: web.Request) -> None:
        """Close the connection: what was written is flushed, then the client sees EOF."""
        transport = request.transport
        if transport is not None:
            transport.close()
