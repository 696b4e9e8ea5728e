"""Any OpenAI-compatible HTTP API: OpenAI, vLLM, Ollama, llama.cpp server, LM Studio."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..config import ProviderConfig
from ..errors import UpstreamError
from ..inference import ChatDelta, ChatOutcome, ChatRequest, EmbedOutcome, ModelToolCall, ModelToolCallDelta, TokenUsage
from ..sse import DONE, aiter_sse
from .base import Provider
from .http import UpstreamClient, endpoint
from .openai_batch import OpenAIBatchMixin
from .openai_media import MEDIA_CAPABILITIES, OpenAIMediaMixin


class OpenAIProvider(OpenAIMediaMixin, OpenAIBatchMixin, Provider):
    capabilities = frozenset({"chat", "tools", "json_schema", "vision", "embed", "batch", *MEDIA_CAPABILITIES})

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        base = config.base_url or "https://api.openai.com/v1"
        self._chat_url = endpoint(base, "/chat/completions")
        self._embed_url = endpoint(base, "/embeddings")
        self._moderations_url = endpoint(base, "/moderations")
        headers = {}
        key = config.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = UpstreamClient(name, config, headers)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _body(self, request: ChatRequest, model: str, stream: bool) -> bytes:
        body = request.model_dump(exclude_none=True)
        body["model"] = model
        if stream:
            body["stream"] = True
            opts = body.get("stream_options") or {}
            body["stream_options"] = {**opts, "include_usage": True}
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return orjson.dumps(body)

    async def chat(self, request: ChatRequest, model: str) -> ChatOutcome:
        raw = await self._http.post_json(self._chat_url, self._body(request, model, stream=False))
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise UpstreamError(
                f"{self.name}: unreadable chat response ({type(err).__name__}: {err})",
                code="upstream_invalid_response",
            ) from None
        return self.parse_chat(data, model)

    def parse_chat(self, data: Any, model: str) -> ChatOutcome:
        """A ``chat.completion`` object (live, or a batch's answer line) as a :class:`ChatOutcome`."""
        try:
            choice = data["choices"][0]
            message = choice["message"]
            tool_calls = [
                ModelToolCall(
                    id=tc["id"], name=tc["function"]["name"], arguments=tc["function"].get("arguments") or "{}"
                )
                for tc in message.get("tool_calls") or ()
            ]
            return ChatOutcome(
                content=message.get("content"),
                tool_calls=tool_calls,
                finish_reason=choice.get("finish_reason") or "stop",
                usage=parse_usage(data.get("usage")),
                provider=self.name,
                provider_model=data.get("model") or model,
            )
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise UpstreamError(
                f"{self.name}: unreadable chat response ({type(err).__name__}: {err})",
                code="upstream_invalid_response",
            ) from None

    async def stream_chat(self, request: ChatRequest, model: str) -> AsyncIterator[ChatDelta]:
        finished = False
        chunks = self._http.post_stream(self._chat_url, self._body(request, model, stream=True))
        async with contextlib.aclosing(chunks):  # closed on every exit: the connection goes back at once
            async for event in aiter_sse(chunks):
                payload = event.data
                if payload == DONE:
                    return
                try:
                    data = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    raise UpstreamError(
                        f"{self.name}: malformed stream event", code="upstream_invalid_response"
                    ) from None
                if not isinstance(data, dict):
                    continue
                if data.get("error"):
                    raise UpstreamError(f"{self.name}: upstream stream error: {data['error']}", code="upstream_error")
                delta = parse_chunk(data)
                if delta is not None:
                    if delta.finish_reason:
                        finished = True
                    yield delta
        if not finished:
            raise UpstreamError(f"{self.name}: stream ended before completion", code="upstream_disconnected")

    async def embed(self, texts: list[str], model: str, dimensions: int | None = None) -> EmbedOutcome:
        body: dict[str, Any] = {"model": model, "input": texts, "encoding_format": "float"}
        if dimensions:
            body["dimensions"] = dimensions
        raw = await self._http.post_json(self._embed_url, orjson.dumps(body))
        try:
            data = orjson.loads(raw)
            items = sorted(data["data"], key=lambda d: d.get("index", 0))
            vectors = [list(map(float, item["embedding"])) for item in items]
            usage = data.get("usage") or {}
            return EmbedOutcome(
                embeddings=vectors,
                usage=TokenUsage(input_tokens=int(usage.get("prompt_tokens") or 0)),
                provider=self.name,
                provider_model=data.get("model") or model,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise UpstreamError(
                f"{self.name}: unreadable embeddings response ({type(err).__name__})",
                code="upstream_invalid_response",
            ) from None

    async def moderate(self, body: dict[str, Any]) -> dict[str, Any]:
        """Forward an OpenAI ``/moderations`` request; the upstream's answer as it came."""
        raw = await self._http.post_json(self._moderations_url, orjson.dumps(body))
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise UpstreamError(f"{self.name}: unreadable moderation response", code="upstream_invalid_response")
        return data


def parse_usage(usage: dict[str, Any] | None) -> TokenUsage:
    if not usage:
        return TokenUsage()
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return TokenUsage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(prompt_details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


def parse_chunk(data: dict[str, Any]) -> ChatDelta | None:
    """An OpenAI ``chat.completion.chunk`` as a :class:`ChatDelta` (None if it carries nothing)."""
    usage = parse_usage(data["usage"]) if data.get("usage") else None
    choices = data.get("choices") or []
    if not choices:
        return ChatDelta(usage=usage) if usage else None
    choice = choices[0]
    delta = choice.get("delta") or {}
    tool_deltas = None
    if delta.get("tool_calls"):
        tool_deltas = [
            ModelToolCallDelta(
                index=int(tc.get("index", i)),
                id=tc.get("id"),
                name=(tc.get("function") or {}).get("name"),
                arguments=(tc.get("function") or {}).get("arguments") or "",
            )
            for i, tc in enumerate(delta["tool_calls"])
        ]
    content = delta.get("content") or None  # the role-only first chunk carries ""
    finish = choice.get("finish_reason")
    if content is None and tool_deltas is None and finish is None and usage is None:
        return None
    return ChatDelta(content=content, tool_calls=tool_deltas, finish_reason=finish, usage=usage)
