"""The Anthropic Messages API (``POST /v1/messages``), translated from the OpenAI chat format.

``response_format`` is emulated, since the Messages API has no such parameter:

* ``json_schema``: a tool named after the schema, with the schema as its ``input_schema``, is
  added and forced (or, when the request has tools of its own, the model must call *some* tool).
  When the model calls it, its input is returned as the answer's JSON text ``content`` (not as a
  tool call) and the finish reason is ``"stop"``.
* ``json_object``: a system instruction asks for a single JSON object and nothing else.

TokenUsage follows the OpenAI convention: ``input_tokens`` counts every prompt token (Anthropic's
uncached, cache-write and cache-read tokens together) and ``cached_tokens`` the cache reads.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from ..config import ProviderConfig
from ..errors import InvalidRequestError, UpstreamError
from ..inference import ChatDelta, ChatOutcome, ChatRequest, Message, ModelToolCall, ModelToolCallDelta, TokenUsage
from ..sse import aiter_sse
from .base import Provider
from .http import UpstreamClient, endpoint

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object only: no prose, no code fences."
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_DATA_URL = re.compile(r"data:([^;,]+);base64,(.*)", re.DOTALL)
_BAD_TOOL_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


class AnthropicProvider(Provider):
    capabilities = frozenset({"chat", "tools", "json_schema", "vision"})

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        base = (config.base_url or "https://api.anthropic.com").rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        self._url = endpoint(base, "/messages")
        self._default_max_tokens = int(config.options.get("default_max_tokens", DEFAULT_MAX_TOKENS))
        headers = {"anthropic-version": API_VERSION}
        key = config.api_key()
        if key:
            headers["x-api-key"] = key
        self._http = UpstreamClient(name, config, headers)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- request ---------------------------------------------------------------------------------

    def _body(self, request: ChatRequest, model: str, stream: bool) -> tuple[bytes, str | None]:
        """The Messages API body, and the name of the emulated ``json_schema`` tool (if any)."""
        system: list[str] = []
        messages: list[dict[str, Any]] = []
        for msg in request.messages:
            if msg.role in ("system", "developer"):
                system.append(_text_of(msg.content))
                continue
            role, blocks = _translate(msg)
            if not blocks:
                continue
            if messages and messages[-1]["role"] == role:  # the API wants alternating turns
                messages[-1]["content"].extend(blocks)
            else:
                messages.append({"role": role, "content": blocks})

        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": request.output_limit or self._default_max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        stops = [request.stop] if isinstance(request.stop, str) else (request.stop or [])
        stops = [s for s in stops if s.strip()]  # Anthropic refuses whitespace-only sequences
        if stops:
            body["stop_sequences"] = stops
        if request.user:
            body["metadata"] = {"user_id": request.user}

        tools = [
            {
                "name": t.function.name,
                "description": t.function.description or "",
                "input_schema": t.function.parameters or {"type": "object", "properties": {}},
            }
            for t in request.tools or ()
        ]
        choice = _tool_choice(request.tool_choice) if tools else None
        schema_tool = None
        schema = request.json_schema()
        rf_type = (request.response_format or {}).get("type")
        if schema is not None:
            spec = (request.response_format or {}).get("json_schema") or {}
            schema_tool = _BAD_TOOL_CHARS.sub("_", str(spec.get("name") or "json_response"))[:64]
            tools.append(
                {
                    "name": schema_tool,
                    "description": spec.get("description") or "Give the final answer as this tool's input.",
                    "input_schema": schema or {"type": "object"},
                }
            )
            if len(tools) == 1 or choice == {"type": "none"}:
                choice = {"type": "tool", "name": schema_tool}
            elif choice is None or choice == {"type": "auto"}:
                choice = {"type": "any"}
        elif rf_type == "json_object":
            system.append(JSON_OBJECT_INSTRUCTION)
        if tools:
            body["tools"] = tools
            choice = choice or {"type": "auto"}
            if request.parallel_tool_calls is False and choice["type"] != "none":
                choice["disable_parallel_tool_use"] = True
            body["tool_choice"] = choice

        if system:
            body["system"] = "\n\n".join(s for s in system if s)
        if stream:
            body["stream"] = True
        return orjson.dumps(body), schema_tool

    # -- non-streaming ---------------------------------------------------------------------------

    async def chat(self, request: ChatRequest, model: str) -> ChatOutcome:
        body, schema_tool = self._body(request, model, stream=False)
        raw = await self._http.post_json(self._url, body)
        try:
            data = orjson.loads(raw)
            if data.get("type") == "error":
                raise self._stream_error(data)
            texts: list[str] = []
            answer: str | None = None  # the emulated json_schema answer
            tool_calls: list[ModelToolCall] = []
            for block in data["content"]:
                kind = block.get("type")
                if kind == "text":
                    texts.append(block["text"])
                elif kind == "tool_use" and block["name"] == schema_tool:
                    answer = answer or orjson.dumps(block.get("input") or {}).decode()
                elif kind == "tool_use":
                    args = orjson.dumps(block.get("input") or {}).decode()
                    tool_calls.append(ModelToolCall(id=block["id"], name=block["name"], arguments=args))
            finish = _FINISH.get(data.get("stop_reason") or "", "stop")
            if answer is not None and not tool_calls:
                finish = "stop"
            return ChatOutcome(
                content=answer if answer is not None else ("".join(texts) if texts else None),
                tool_calls=tool_calls,
                finish_reason=finish,
                usage=parse_usage(data.get("usage")),
                provider=self.name,
                provider_model=data.get("model") or model,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise UpstreamError(
                f"{self.name}: unreadable chat response ({type(err).__name__}: {err})",
                code="upstream_invalid_response",
            ) from None

    # -- streaming -------------------------------------------------------------------------------

    async def stream_chat(self, request: ChatRequest, model: str) -> AsyncIterator[ChatDelta]:
        body, schema_tool = self._body(request, model, stream=True)
        usage = TokenUsage()
        stop_reason: str | None = None
        tool_index: dict[int, int] = {}  # content block index -> OpenAI tool call index
        schema_blocks: set[int] = set()  # blocks carrying the emulated json_schema answer
        # closed on every exit, so the pooled connection is released at once
        chunks = self._http.post_stream(self._url, body)
        async with aclosing(chunks):
            async for sse in aiter_sse(chunks):
                try:
                    event = orjson.loads(sse.data)
                    kind = event["type"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    raise UpstreamError(
                        f"{self.name}: malformed stream event", code="upstream_invalid_response"
                    ) from None
                if kind == "content_block_delta":
                    delta = event.get("delta") or {}
                    i = event.get("index", 0)
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        yield ChatDelta(content=delta["text"])
                    elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                        if i in schema_blocks:
                            yield ChatDelta(content=delta["partial_json"])
                        elif i in tool_index:
                            part = ModelToolCallDelta(index=tool_index[i], arguments=delta["partial_json"])
                            yield ChatDelta(tool_calls=[part])
                elif kind == "content_block_start":
                    block = event.get("content_block") or {}
                    i = event.get("index", 0)
                    if block.get("type") == "text" and block.get("text"):
                        yield ChatDelta(content=block["text"])
                    elif block.get("type") == "tool_use":
                        if block.get("name") == schema_tool and not schema_blocks:
                            schema_blocks.add(i)
                        elif block.get("name") != schema_tool:
                            tool_index[i] = len(tool_index)
                            start = ModelToolCallDelta(tool_index[i], id=block.get("id"), name=block.get("name"))
                            yield ChatDelta(tool_calls=[start])
                elif kind == "message_start":
                    message = event.get("message") or {}
                    usage = parse_usage(message.get("usage"))
                elif kind == "message_delta":
                    stop_reason = (event.get("delta") or {}).get("stop_reason") or stop_reason
                    _merge_usage(usage, event.get("usage"))
                elif kind == "message_stop":
                    finish = _FINISH.get(stop_reason or "", "stop")
                    if schema_blocks and not tool_index:
                        finish = "stop"
                    yield ChatDelta(finish_reason=finish, usage=usage)
                    return
                elif kind == "error":
                    raise self._stream_error(event)
        raise UpstreamError(f"{self.name}: stream ended before message_stop", code="upstream_disconnected")

    def _stream_error(self, event: dict[str, Any]) -> UpstreamError:
        err = event.get("error") or {}
        detail = f"{err.get('type', 'error')}: {err.get('message', '')}" if isinstance(err, dict) else err
        return UpstreamError(f"{self.name}: upstream error: {detail}", code="upstream_error")


# -- translation helpers -----------------------------------------------------------------------------


def _text_of(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if p.get("type") == "text")
    return content or ""


def _blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) as Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": part.get("text") or ""}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            if block["text"]:
                out.append(block)
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            out.append(_image_block(str(url or "")))
        else:  # already an Anthropic block (image, document, ...): pass it through
            out.append(part)
    return out


def _image_block(url: str) -> dict[str, Any]:
    m = _DATA_URL.match(url)
    if m:
        return {"type": "image", "source": {"type": "base64", "media_type": m[1], "data": m[2]}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequestError("image_url must be an http(s) URL or a base64 data: URL", code="invalid_image_url")


def _translate(msg: Message) -> tuple[str, list[dict[str, Any]]]:
    """One non-system OpenAI message as (Anthropic role, content blocks)."""
    if msg.role == "tool":
        content = msg.content if isinstance(msg.content, str) else _blocks(msg.content)
        result = {"type": "tool_result", "tool_use_id": msg.tool_call_id or "", "content": content or ""}
        return "user", [result]
    blocks = _blocks(msg.content)
    for tc in msg.tool_calls or ():
        try:
            args = orjson.loads(tc.function.arguments or "{}")
        except orjson.JSONDecodeError:
            raise InvalidRequestError(
                f"tool call {tc.id!r} has arguments that are not valid JSON", code="invalid_tool_arguments"
            ) from None
        if not isinstance(args, dict):
            args = {"value": args}
        blocks.append({"type": "tool_use", "id": tc.id, "name": tc.function.name, "input": args})
    return msg.role, blocks


def _tool_choice(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"type": "tool", "name": name}
        return None
    return {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}.get(choice)


def parse_usage(usage: dict[str, Any] | None) -> TokenUsage:
    out = TokenUsage()
    _merge_usage(out, usage)
    return out


def _merge_usage(out: TokenUsage, usage: dict[str, Any] | None) -> None:
    """Fold an Anthropic usage object into ``out`` (later events carry cumulative counts)."""
    if not usage:
        return
    if usage.get("input_tokens") is not None:
        read = int(usage.get("cache_read_input_tokens") or 0)
        written = int(usage.get("cache_creation_input_tokens") or 0)
        out.input_tokens = int(usage["input_tokens"]) + read + written
        out.cached_tokens = read
    if usage.get("output_tokens") is not None:
        out.output_tokens = int(usage["output_tokens"])
