"""Started upstream streams (chat deltas, speech audio) and what they share: however one ends
(finished, failed upstream, or left by its caller), its upstream is closed and the inference filed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from ..backends.store import new_id
from ..errors import RunyardError
from ..inference import (
    AUDIO_MEDIA_TYPES,
    Attempt,
    ChatDelta,
    ChatOutcome,
    ChatRequest,
    ModelToolCall,
    SpeechRequest,
    TokenUsage,
)
from ..providers import can_fall_back
from ..telemetry.tracing import NOOP_DETACHED, Detached
from .fallback import aclose_quietly

if TYPE_CHECKING:
    from .ai import AIService, CallContext, Route
    from .media import MediaRoute, MediaService

T = TypeVar("T")


class StartedStream(Generic[T]):
    """An upstream stream whose first item is in (so a failure before it could still fall back):
    the rest comes from ``upstream``. However its iteration ends (finished, failed upstream, or
    left by its caller), :meth:`_filed` closes the upstream and files the inference."""

    def __init__(self, ctx: CallContext, first: T, upstream: AsyncIterator[T], started: float) -> None:
        self.ctx = ctx
        self._first: T | None = first
        self._upstream = upstream
        self._started = started

    @contextlib.asynccontextmanager
    async def _filed(
        self, ended: Callable[[str, str | None], None], failed: Callable[[RunyardError], None] | None = None
    ) -> AsyncIterator[None]:
        """Around the iteration (entered once per stream, not per item): at its end, close the
        upstream and call ``ended(status, error)``: ``ok``; ``error`` with the upstream's error,
        which ``failed`` sees first; ``cancelled`` when the caller went away."""
        status, error = "ok", None
        try:
            yield
        except RunyardError as err:
            status, error = "error", f"{err.code}: {err.message}"
            if failed is not None:
                failed(err)
            raise
        except BaseException:
            status, error = "cancelled", "client went away before the stream ended"
            raise
        finally:
            await aclose_quietly(self._upstream)
            ended(status, error)


class ChatStream(StartedStream[ChatDelta]):
    """A started chat stream: ``result`` holds ids and the serving provider; iterate for deltas.

    Iterating to the end fills ``result`` (content, tool calls, usage, cost) and records the
    inference; an upstream failure after the first delta is raised from the iterator.
    """

    def __init__(
        self,
        service: AIService,
        request: ChatRequest,
        ctx: CallContext,
        result: ChatOutcome,
        route: Route,
        first: ChatDelta,
        upstream: AsyncIterator[ChatDelta],
        started: float,
    ) -> None:
        super().__init__(ctx, first, upstream, started)
        self.service = service
        self.request = request
        self.result = result
        self._route = route
        self.span: Detached = NOOP_DETACHED  # the inference's span, ended with the stream

    async def __aiter__(self) -> AsyncIterator[ChatDelta]:
        result = self.result
        parts: list[str] = []
        calls: dict[int, ModelToolCall] = {}
        usage = TokenUsage()
        ttft: float | None = None
        held: ChatDelta | None = None
        breakers, route_key = self.service.breakers, self._route.key

        def failed(err: RunyardError) -> None:
            if can_fall_back(err):
                breakers.failure(route_key)

        def ended(status: str, error: str | None) -> None:
            result.content = "".join(parts) if parts else None
            result.tool_calls = [calls[i] for i in sorted(calls)]
            result.usage = usage
            price = self._route.price
            result.cost = (
                None if price is None else price.cost(usage.input_tokens, usage.output_tokens, usage.cached_tokens)
            )
            result.latency_ms = (time.perf_counter() - self._started) * 1000
            span = self.span
            with span.current():
                self.service._finish_chat(
                    self.request, result, self.ctx, ttft_ms=ttft, status=status, error=error, span=span
                )
            span.end()

        async with self._filed(ended, failed):
            while True:
                if self._first is not None:
                    delta, self._first = self._first, None
                else:
                    try:
                        delta = await anext(self._upstream)
                    except StopAsyncIteration:
                        break
                if ttft is None:
                    ttft = (time.perf_counter() - self._started) * 1000
                if delta.content:
                    parts.append(delta.content)
                for tc in delta.tool_calls or ():
                    call = calls.setdefault(tc.index, ModelToolCall(id="", name="", arguments=""))
                    call.id = tc.id or call.id
                    call.name = tc.name or call.name
                    call.arguments += tc.arguments
                if delta.usage:
                    usage = delta.usage
                if delta.finish_reason:
                    result.finish_reason = delta.finish_reason
                # The last delta carries both finish_reason and usage (OpenAI sends usage after).
                if held is not None:
                    if delta.usage and not (delta.content or delta.tool_calls or delta.finish_reason):
                        held.usage = delta.usage
                        continue
                    yield held
                    held = None
                if delta.finish_reason:
                    held = delta
                    continue
                yield delta
            if held is not None:
                yield held
            breakers.success(route_key)


class SpeechStream(StartedStream[bytes]):
    """Streamed audio: ``media_type`` and ``inference_id`` are known up front; iterating yields
    the bytes and, at the end, records the inference."""

    def __init__(
        self,
        service: MediaService,
        request: SpeechRequest,
        ctx: CallContext,
        route: MediaRoute,
        attempts: list[Attempt],
        first: bytes,
        upstream: AsyncIterator[bytes],
        started: float,
    ) -> None:
        super().__init__(ctx, first, upstream, started)
        self.service = service
        self.request = request
        self.route = route
        self.attempts = attempts
        self.ttft_ms = (time.perf_counter() - started) * 1000
        self.inference_id = new_id()
        self.media_type = AUDIO_MEDIA_TYPES.get(request.audio_format, "application/octet-stream")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0

        def ended(status: str, error: str | None) -> None:
            latency = (time.perf_counter() - self._started) * 1000
            self.service._record(
                "tts",
                self.inference_id,
                self.ctx,
                self.route,
                {"input": self.request.input, "voice": self.request.voice, "format": self.request.audio_format},
                {"bytes": size, "media_type": self.media_type, "streamed": True},
                TokenUsage(input_tokens=len(self.request.input)),
                latency,
                self.attempts,
                ttft_ms=self.ttft_ms,
                status=status,
                error=error,
            )

        async with self._filed(ended):
            if self._first:
                size += len(self._first)
                yield self._first
            self._first = None
            async for piece in self._upstream:
                size += len(piece)
                yield piece
