"""A mock OpenAI-compatible upstream: a real aiohttp HTTP server on 127.0.0.1.

The server (a :class:`support.mock_server.ThreadedMockServer`, whose behaviours this module
re-exports) runs in a background thread with its own event loop, so it can be used from
sync tests and from async tests (whatever loop they run on) alike::

    mock = MockOpenAI().start()
    mock.url                      # "http://127.0.0.1:PORT/v1"
    mock.script(B.status(429, headers={"retry-after": "1"}), B.reply("hi"))
    ...                           # first request gets the 429, second "hi", then default behaviour
    mock.requests                 # [{"method", "path", "headers", "json"}, ...]
    mock.stop()

Routes: ``POST /v1/chat/completions`` (stream and non-stream), ``POST /v1/embeddings``,
``POST /v1/moderations`` (flags inputs containing "attack"), ``GET /v1/models``. Every
request to any route is recorded and consumes one scripted behaviour (FIFO); with the queue
empty the default behaviour applies.

Default chat behaviour, in order of precedence:

1. ``tools`` present, ``tool_choice`` not ``"none"`` and the last message is not a tool
   result: a tool call (id ``call_1``) to the first tool (or the one named by
   ``tool_choice``), arguments ``{"<first required string property>": "Paris"}`` (or
   ``{}``), finish_reason ``tool_calls``.
2. ``response_format`` ``json_schema``: a JSON object filling the schema's required
   properties (string "x", integer 1, number 1.0, boolean true, array [], object {} or
   its own required properties, enum -> first value); ``json_object``: ``{"ok": true}``.
3. last message is a tool result: ``"tool said: <content>"``.
4. otherwise ``"echo: <last user message text>"``.

Token counts are whitespace-separated words (at least 1): prompt = words over all
message contents, completion = words of the answer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from support.mock_server import (
    DISCONNECTED,
    B,
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

__all__ = [
    "B",
    "Behaviour",
    "Delay",
    "DropMidStream",
    "Hang",
    "Malformed",
    "MockOpenAI",
    "Reply",
    "Status",
]

DEFAULT_MODEL = "mock-model"
DEFAULT_EMBEDDING_DIM = 8
CREATED = 1_700_000_000
SYSTEM_FINGERPRINT = "fp_mock"

# --------------------------------------------------------------------------- helpers


def _text_of(content: Any) -> str:
    """Text of a message content: a string, or a list of parts (text parts joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "".join(texts)
    return str(content)


def _count_tokens(text: str) -> int:
    return max(1, len(text.split()))


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _tool_arguments(tool: dict[str, Any]) -> dict[str, Any]:
    params = (tool.get("function") or {}).get("parameters") or {}
    props = params.get("properties") or {}
    for name in params.get("required") or []:
        prop = props.get(name) or {}
        typ = prop.get("type")
        if typ == "string" or (isinstance(typ, list) and "string" in typ):
            return {name: "Paris"}
    return {}


def _normalize_tool_calls(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(tool_calls):
        if "function" in call:
            fn = dict(call["function"])
            call_id = call.get("id", f"call_{i + 1}")
        else:
            fn = {"name": call["name"], "arguments": call.get("arguments", {})}
            call_id = call.get("id", f"call_{i + 1}")
        if not isinstance(fn.get("arguments"), str):
            fn["arguments"] = json.dumps(fn.get("arguments") or {})
        out.append({"id": call_id, "type": "function", "function": fn})
    return out


def _embedding(text: str, dim: int) -> list[float]:
    out: list[float] = []
    counter = 0
    while len(out) < dim:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        for i in range(0, len(digest), 4):
            if len(out) == dim:
                break
            (n,) = struct.unpack("<I", digest[i : i + 4])
            out.append(round(n / 0xFFFFFFFF * 2 - 1, 6))
        counter += 1
    return out


def _error_body(code: int, message: str | None = None) -> dict[str, Any]:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(code, "server_error" if code >= 500 else "invalid_request_error")
    return {
        "error": {
            "message": message or f"mock upstream error {code}",
            "type": kind,
            "param": None,
            "code": kind,
        }
    }


@dataclass
class _Answer:
    content: str | None
    tool_calls: list[dict[str, Any]] | None
    finish_reason: str
    usage: dict[str, int]


# --------------------------------------------------------------------------- server


class MockOpenAI(ThreadedMockServer):
    """Mock OpenAI-compatible upstream; see the module docstring."""

    url_suffix = "/v1"
    thread_name = "mock-openai"
    _error_body = staticmethod(_error_body)

    # ---- request handling

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        behaviour, seq = self._record(request, body)

        if isinstance(behaviour, Status):
            return self._status_response(behaviour)
        if isinstance(behaviour, (Hang, Delay)):
            await self._sleep(behaviour.seconds)
            behaviour = None

        path = request.path.rstrip("/")
        if path.endswith("/chat/completions") and request.method == "POST":
            return await self._chat(request, body if isinstance(body, dict) else {}, behaviour, seq)
        if isinstance(behaviour, Malformed):
            return web.Response(status=200, body=b"{not json", content_type="application/json")
        if path.endswith("/embeddings") and request.method == "POST":
            resp: web.StreamResponse = self._embeddings(body if isinstance(body, dict) else {})
        elif path.endswith("/moderations") and request.method == "POST":
            resp = self._moderations(body if isinstance(body, dict) else {})
        elif path.endswith("/models") and request.method == "GET":
            resp = web.json_response(
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": CREATED, "owned_by": "mock"}
                        for m in (DEFAULT_MODEL, "mock-embedding")
                    ],
                }
            )
        else:
            resp = web.json_response(_error_body(404, f"no route {request.method} {request.path}"), status=404)
        if isinstance(behaviour, DropMidStream):
            return await self._drop_body(request, resp)
        return resp

    def _embeddings(self, body: dict[str, Any]) -> web.Response:
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and all(isinstance(x, int) for x in inputs)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return web.json_response(_error_body(400, "'input' is required"), status=400)
        dim = body.get("dimensions") or DEFAULT_EMBEDDING_DIM
        fmt = body.get("encoding_format") or "float"
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += len(item) if isinstance(item, list) else _count_tokens(text)
            vec = _embedding(text, int(dim))
            emb: Any = vec
            if fmt == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or "mock-embedding",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def _moderations(self, body: dict[str, Any]) -> web.Response:
        """Flags an input that contains the word "attack" (category violence)."""
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return web.json_response(_error_body(400, "'input' is required"), status=400)
        results = []
        for item in inputs:
            flagged = "attack" in _text_of(item if isinstance(item, str) else [item]).lower()
            results.append(
                {
                    "flagged": flagged,
                    "categories": {"violence": flagged, "hate": False},
                    "category_scores": {"violence": 0.97 if flagged else 0.01, "hate": 0.0},
                    "category_applied_input_types": {"violence": ["text"], "hate": ["text"]},
                }
            )
        model = body.get("model") or "omni-moderation-latest"
        return web.json_response({"id": "modr-mock", "model": model, "results": results})

    def _answer(self, body: dict[str, Any], behaviour: Behaviour | None) -> _Answer:
        messages = body.get("messages") or []
        prompt_tokens = max(
            1,
            sum(len(_text_of(m.get("content")).split()) for m in messages if isinstance(m, dict)),
        )
        if isinstance(behaviour, Reply):
            calls = _normalize_tool_calls(behaviour.tool_calls) if behaviour.tool_calls else None
            finish = behaviour.finish_reason or ("tool_calls" if calls else "stop")
            text = behaviour.content or ""
            if calls:
                text += " ".join(c["function"]["arguments"] for c in calls)
            usage = behaviour.usage or _usage(prompt_tokens, _count_tokens(text))
            return _Answer(behaviour.content, calls, finish, usage)

        last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
        tools = body.get("tools") or []
        tool_choice = body.get("tool_choice")
        if tools and tool_choice != "none" and last.get("role") != "tool":
            tool = tools[0]
            if isinstance(tool_choice, dict):
                wanted = (tool_choice.get("function") or {}).get("name")
                tool = next((t for t in tools if (t.get("function") or {}).get("name") == wanted), tool)
            args = json.dumps(_tool_arguments(tool))
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": (tool.get("function") or {}).get("name", ""), "arguments": args},
            }
            return _Answer(None, [call], "tool_calls", _usage(prompt_tokens, _count_tokens(args)))

        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {}
            content = json.dumps(object_for(schema))
        elif fmt.get("type") == "json_object":
            content = json.dumps({"ok": True})
        elif last.get("role") == "tool":
            content = "tool said: " + _text_of(last.get("content"))
        else:
            user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), {})
            content = "echo: " + _text_of(user.get("content"))
        return _Answer(content, None, "stop", _usage(prompt_tokens, _count_tokens(content)))

    async def _chat(
        self, request: web.Request, body: dict[str, Any], behaviour: Behaviour | None, seq: int
    ) -> web.StreamResponse:
        stream = bool(body.get("stream"))
        model = body.get("model") or DEFAULT_MODEL
        cid = f"chatcmpl-mock-{seq}"

        if isinstance(behaviour, Malformed):
            if stream:
                return await self._sse(request, [b"data: {not json\n\n", b"data: [DONE]\n\n"])
            return web.Response(status=200, body=b"{not json", content_type="application/json")

        answer = self._answer(body, behaviour)
        if not stream:
            message: dict[str, Any] = {"role": "assistant", "content": answer.content, "refusal": None}
            if answer.tool_calls:
                message["tool_calls"] = answer.tool_calls
            resp = web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": CREATED,
                    "model": model,
                    "system_fingerprint": SYSTEM_FINGERPRINT,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": None,
                            "finish_reason": answer.finish_reason,
                        }
                    ],
                    "usage": answer.usage,
                }
            )
            if isinstance(behaviour, DropMidStream):
                return await self._drop_body(request, resp)
            return resp

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            obj: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                obj["usage"] = None
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        first_content = None if answer.tool_calls and not answer.content else ""
        head = [chunk({"role": "assistant", "content": first_content, "refusal": None})]
        content_chunks = [chunk({"content": piece}) for piece in split_words(answer.content or "")]
        body_chunks = list(content_chunks)
        for index, call in enumerate(answer.tool_calls or []):
            body_chunks.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
            )
            for piece in split_n(call["function"]["arguments"], 3):
                body_chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))

        if isinstance(behaviour, DropMidStream):
            return await self._sse(request, head + body_chunks[: max(0, behaviour.after_chunks)], abort=True)

        tail = [chunk({}, answer.finish_reason)]
        if include_usage:
            usage_obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [],
                "usage": answer.usage,
            }
            tail.append(b"data: " + json.dumps(usage_obj).encode() + b"\n\n")
        tail.append(b"data: [DONE]\n\n")
        return await self._sse(request, head + body_chunks + tail)

    async def _sse(self, request: web.Request, events: list[bytes], abort: bool = False) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            },
        )
        try:
            await resp.prepare(request)
            for event in events:
                await resp.write(event)
                await asyncio.sleep(0)  # let each event go out as its own chunk
            if abort:
                self._abort(request)
                return resp
            await resp.write_eof()
        except DISCONNECTED:
            pass
        return resp

    async def _drop_body(self, request: web.Request, full: web.StreamResponse) -> web.StreamResponse:
        """Send the status line, headers (with the full Content-Length) and half the body, then
        abort the connection."""
        assert isinstance(full, web.Response)
        data = full.body if isinstance(full.body, bytes) else b""
        resp = web.StreamResponse(status=full.status, headers={"Content-Type": full.content_type})
        resp.content_length = len(data)
        try:
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            self._abort(request)
        except DISCONNECTED:
            pass
        return resp

    @staticmethod
    def _abort(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()
