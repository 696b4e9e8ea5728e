"""Filing inferences: one ``inferences`` row per chat, embedding or failed call, built lazily and
handed to the :class:`InferenceRecorder` (which batches the writes). Dry runs are never filed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel

from .._json import dumps_kept
from ..backends.recorder import InferenceRecorder
from ..backends.store import new_id, utcnow
from ..errors import RunyardError
from ..inference import Attempt, ChatOutcome, ChatRequest, EmbedOutcome, Message, TokenUsage

if TYPE_CHECKING:
    from .ai import CallContext

__all__ = ["InferenceFiler", "chat_input", "inference_row", "messages_size", "payload_size"]

_INPUT_EXCLUDE = {"model", "stream", "stream_options"}


def chat_input(request: ChatRequest) -> orjson.Fragment:
    """The request as stored: JSON made by pydantic-core in one pass, embedded as-is by orjson."""
    return orjson.Fragment(request.model_dump_json(exclude_none=True, exclude=_INPUT_EXCLUDE))


def payload_size(value: Any) -> int:
    """About how many bytes the strings in ``value`` hold: a buffered row's weight beyond its
    fixed overhead (what bounds the recorder's memory in bytes, not only in rows)."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, dict):
        return sum(map(payload_size, value.values()))
    if isinstance(value, (list, tuple)):
        return sum(map(payload_size, value))
    if isinstance(value, BaseModel):  # a tool call, a content part
        return sum(map(payload_size, value.__dict__.values()))
    return 8


def messages_size(messages: list[Message]) -> int:
    """:func:`payload_size` of a chat's messages, in a fraction of a microsecond for plain text."""
    n = 0
    for message in messages:
        content = message.content
        n += len(content) if isinstance(content, str) else payload_size(content)
        if message.tool_calls:
            n += payload_size(message.tool_calls)
    return n


def inference_row(
    kind: str, inference_id: str, episode_id: str | None, model: str, provider: str | None,
    provider_model: str | None, input_: Any, output: Any, usage: TokenUsage, latency_ms: float,
    ttft_ms: float | None, status: str, error: str | None, attempts: list[Attempt], ctx: CallContext,
    created: Any, cost: float | None, cache_hit: bool,
) -> dict[str, Any]:  # fmt: skip
    """One ``inferences`` row; every kind of inference (chat, embed, speech, …) is filed through here."""
    return {
        "id": inference_id,
        "episode_id": episode_id,
        "kind": kind,
        "model": model,
        "provider": provider,
        "provider_model": provider_model,
        "input": input_,
        "output": output,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_tokens": usage.cached_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "latency_ms": latency_ms,
        "ttft_ms": ttft_ms,
        "status": status,
        "error": error,
        "attempts": orjson.Fragment(dumps_kept(attempts)),  # dataclasses, serialised by orjson in C
        "api_key_id": ctx.api_key_id,
        "tags": ctx.tags or {},
        "created_at": created,
        "cost": cost,
        "cache_hit": cache_hit,
        "request_id": None,  # set by the recorder from the request in progress (0009)
        "trace_id": None,
    }


class InferenceFiler:
    """Files the AI service's inferences with ``recorder`` (None: nothing is stored)."""

    def __init__(self, recorder: InferenceRecorder | None) -> None:
        self.recorder = recorder

    def chat(
        self,
        request: ChatRequest,
        result: ChatOutcome,
        ctx: CallContext,
        *,
        ttft_ms: float | None,
        status: str,
        error: str | None,
    ) -> None:
        """A chat that was answered (or a stream that ended, ``status`` saying how)."""
        if self.recorder is None or ctx.dryrun:
            return
        created = utcnow()

        def build() -> dict[str, Any]:
            output: dict[str, Any] = {"content": result.content, "finish_reason": result.finish_reason}
            if result.tool_calls:
                output["tool_calls"] = [tc.to_openai() for tc in result.tool_calls]
            return inference_row(
                "chat", result.inference_id, result.episode_id, result.model, result.provider,
                result.provider_model, chat_input(request), output, result.usage, result.latency_ms,
                ttft_ms, status, error, result.attempts, ctx, created, result.cost, result.cache_hit,
            )  # fmt: skip

        size = messages_size(request.messages) + result.text_size()
        self.recorder.record(result.inference_id, result.episode_id, build, size)

    def embed(self, texts: list[str], result: EmbedOutcome, ctx: CallContext) -> None:
        """An answered embedding request (the vectors' count and size, not the vectors).

        The row's builder keeps what the row holds, never ``result``: its vectors (a 3,072-wide one
        is ~100 KB of Python floats) would stay in memory as long as the row waits in the buffer,
        which is up to ``max_buffer`` rows while the database is down."""
        if self.recorder is None or ctx.dryrun:
            return
        created = utcnow()
        vectors = result.embeddings
        output = {"count": len(vectors), "dimensions": len(vectors[0]) if vectors else 0}
        r = result
        inference_id, model, provider, provider_model = r.inference_id, r.model, r.provider, r.provider_model
        usage, latency_ms, attempts, cost = r.usage, r.latency_ms, r.attempts, r.cost

        def build() -> dict[str, Any]:
            return inference_row(
                "embed", inference_id, ctx.episode_id, model, provider, provider_model, {"input": texts}, output,
                usage, latency_ms, None, "ok", None, attempts, ctx, created, cost, False,
            )  # fmt: skip

        self.recorder.record(inference_id, ctx.episode_id, build, sum(map(len, texts)))

    def failure(
        self,
        request: ChatRequest,
        model: str,
        ctx: CallContext,
        attempts: list[Attempt],
        err: RunyardError,
        latency_ms: float,
    ) -> None:
        """A chat route that failed (filed under a fresh id, the error and the attempts so far)."""
        if self.recorder is None or ctx.dryrun:
            return
        inference_id = new_id()
        episode_id = ctx.episode_id
        created = utcnow()
        last = attempts[-1] if attempts else None

        def build() -> dict[str, Any]:
            return inference_row(
                "chat", inference_id, episode_id, model, last.provider if last else None,
                last.model if last else None, chat_input(request), None, TokenUsage(), latency_ms, None,
                "error", f"{err.code}: {err.message}", attempts, ctx, created, None, False,
            )  # fmt: skip

        self.recorder.record(inference_id, episode_id, build, messages_size(request.messages))
