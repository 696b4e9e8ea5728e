"""A deterministic built-in provider for demos and tests: it calls no model.

Models (``dummy::<name>``):
- ``echo`` (and any unknown name): answers ``"echo: <last user text>"``.
- ``json``: answers a JSON object; with a ``json_schema`` response format it fills the
  schema's properties with placeholder values of the right type.
- ``tool``: if tools are given and the last message is not a tool result, calls the first
  tool with placeholder arguments built from its schema; after a tool result it answers
  ``"tool said: <result>"``.
- embeddings: a bag-of-words hash projection, unit length, 64 dims by default.

Options (``[providers.NAME.options]``): ``latency_ms`` (delay before answering),
``chunk_delay_ms`` (between stream chunks), ``error_status`` (fail every call with that
HTTP status), ``fail_after_chunks`` (streams break after N chunks).

It exists so that demos and tests run without keys; it is never picked for real traffic
unless a model names it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..errors import UpstreamError
from ..inference import (
    ChatDelta,
    ChatOutcome,
    ChatRequest,
    EmbedOutcome,
    Message,
    ModelToolCall,
    ModelToolCallDelta,
    TokenUsage,
)
from .base import Provider, upstream_status_error

_WORD = re.compile(r"\S+\s*")


class DummyProvider(Provider):
    capabilities = frozenset({"chat", "tools", "json_schema", "embed"})

    def list_models(self) -> list[str]:
        return ["echo", "json", "tool"]

    @property
    def _opts(self) -> dict[str, Any]:
        return self.config.options

    async def _before(self) -> None:
        latency = float(self._opts.get("latency_ms", 0))
        if latency:
            await asyncio.sleep(latency / 1000)
        status = self._opts.get("error_status")
        if status:
            raise upstream_status_error(self.name, int(status), b'{"error": {"message": "injected failure"}}')

    async def chat(self, request: ChatRequest, model: str) -> ChatOutcome:
        await self._before()
        return self._answer(request, model)

    async def stream_chat(self, request: ChatRequest, model: str) -> AsyncIterator[ChatDelta]:
        await self._before()
        result = self._answer(request, model)
        fail_after = self._opts.get("fail_after_chunks")
        delay = float(self._opts.get("chunk_delay_ms", 0)) / 1000
        sent = 0
        for piece in _WORD.findall(result.content or ""):
            if fail_after is not None and sent >= int(fail_after):
                raise UpstreamError(f"{self.name}: injected stream failure", code="upstream_disconnected")
            if delay:
                await asyncio.sleep(delay)
            yield ChatDelta(content=piece)
            sent += 1
        for i, call in enumerate(result.tool_calls):
            yield ChatDelta(tool_calls=[ModelToolCallDelta(index=i, id=call.id, name=call.name, arguments="")])
            yield ChatDelta(tool_calls=[ModelToolCallDelta(index=i, arguments=call.arguments)])
        yield ChatDelta(finish_reason=result.finish_reason, usage=result.usage)

    def _answer(self, request: ChatRequest, model: str) -> ChatOutcome:
        last = request.messages[-1]
        tool_calls: list[ModelToolCall] = []
        finish = "stop"
        schema = request.json_schema()
        if schema is not None:
            content: str | None = orjson.dumps(placeholder(schema)).decode()
        elif (request.response_format or {}).get("type") == "json_object" or model == "json":
            content = orjson.dumps({"answer": _text(last)}).decode()
        elif last.role == "tool":
            content = f"tool said: {_text(last)}"
        elif request.tools and request.tool_choice != "none" and (model == "tool" or request.tool_choice):
            tool = request.tools[0].function
            choice = request.tool_choice
            if isinstance(choice, dict):
                wanted = (choice.get("function") or {}).get("name")
                tool = next((t.function for t in request.tools if t.function.name == wanted), tool)
            args = placeholder(tool.parameters or {"type": "object"})
            tool_calls = [
                ModelToolCall(
                    id="call_" + _digest(tool.name)[:12], name=tool.name, arguments=orjson.dumps(args).decode()
                )
            ]
            content = None
            finish = "tool_calls"
        else:
            content = f"echo: {_text(last)}"
        prompt_words = sum(len(_text(m).split()) for m in request.messages)
        output_words = len((content or "").split()) + len(tool_calls)
        limit = request.output_limit
        if limit and content and output_words > limit:
            content = "".join(_WORD.findall(content)[:limit]).rstrip()
            output_words, finish = limit, "length"
        return ChatOutcome(
            content=content,
            tool_calls=tool_calls,
            finish_reason=finish,
            usage=TokenUsage(input_tokens=prompt_words, output_tokens=output_words),
            provider=self.name,
            provider_model=model,
        )

    async def embed(self, texts: list[str], model: str, dimensions: int | None = None) -> EmbedOutcome:
        await self._before()
        dims = dimensions or int(self._opts.get("dimensions", 64))
        vectors = [_hash_embedding(t, dims) for t in texts]
        tokens = sum(len(t.split()) for t in texts)
        return EmbedOutcome(
            embeddings=vectors, usage=TokenUsage(input_tokens=tokens), provider=self.name, provider_model=model
        )


def _text(message: Message) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def placeholder(schema: dict[str, Any]) -> Any:
    """A value of the schema's type (properties filled recursively)."""
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: placeholder(v if isinstance(v, dict) else {}) for k, v in props.items()}
    if kind == "array":
        return []
    return {"string": "example", "integer": 1, "number": 1.0, "boolean": True, "null": None}.get(kind, "example")


def _hash_embedding(text: str, dims: int) -> list[float]:
    vec = [0.0] * dims
    for word in text.lower().split():
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vec[h % dims] += 1.0 if (h >> 32) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]
