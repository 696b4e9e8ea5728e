"""The small interface every provider module implements, and the error mapping they share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from ..config import ProviderConfig
from ..errors import (
    InvalidRequestError,
    RateLimitError,
    RunyardError,
    TimeoutError,
    UpstreamError,
)
from ..inference import (
    ChatDelta,
    ChatOutcome,
    ChatRequest,
    EmbedOutcome,
    ImageOutcome,
    ImageRequest,
    RealtimeSession,
    SpeechOutcome,
    SpeechRequest,
    TranscribeOutcome,
    TranscribeRequest,
)


class Provider:
    """One configured upstream (an API, a local runtime, the dummy).

    ``chat``/``stream_chat``/``embed`` raise :class:`RunyardError` subclasses only:
    :func:`can_fall_back` decides whether the next route is tried.
    """

    capabilities: frozenset[str] = frozenset()

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config

    async def start(self) -> None:
        """Open pools or load models; called once before the first request."""

    async def aclose(self) -> None:
        """Release pools and models."""

    async def chat(self, request: ChatRequest, model: str) -> ChatOutcome:
        raise self._unsupported("chat")

    def stream_chat(self, request: ChatRequest, model: str) -> AsyncIterator[ChatDelta]:
        raise self._unsupported("chat")

    async def batch_chat(
        self, request: ChatRequest, model: str, progress: Callable[[float, str], None] | None = None
    ) -> ChatOutcome:
        """``batch_mode``: through the provider's batch API (the outcome's ``batch_id`` set, priced at
        the batch price), reporting ``progress(fraction, message)`` while it waits. Providers without
        one (this default) call live: same answer, live price."""
        return await self.chat(request, model)

    async def embed(self, texts: list[str], model: str, dimensions: int | None = None) -> EmbedOutcome:
        raise self._unsupported("embeddings")

    def list_models(self) -> list[str]:
        """Models this provider knows it can serve without configuration (may be empty)."""
        return []

    # -- media (optional; see ``capabilities``: "tts", "asr", "image", "vision") ----------
    def supports(self, capability: str) -> bool:
        """Whether this provider can serve ``capability`` here (installed, configured)."""
        return capability in self.capabilities

    async def speech(self, request: SpeechRequest, model: str) -> SpeechOutcome:
        raise self._unsupported("text-to-speech")

    def stream_speech(self, request: SpeechRequest, model: str) -> AsyncIterator[bytes]:
        """Audio bytes as they are synthesised (a WAV header first for ``wav``)."""
        raise self._unsupported("text-to-speech")

    async def transcribe(self, request: TranscribeRequest, model: str) -> TranscribeOutcome:
        raise self._unsupported("speech recognition")

    async def generate_image(self, request: ImageRequest, model: str) -> ImageOutcome:
        raise self._unsupported("image generation")

    async def realtime_session(
        self, model: str, *, voice: str | None = None, ttl_seconds: int | None = None
    ) -> RealtimeSession:
        raise self._unsupported("realtime sessions")

    def _unsupported(self, what: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"provider {self.name!r} ({self.config.kind}) does not support {what}",
            code="unsupported_capability",
        )


def can_fall_back(err: RunyardError) -> bool:
    """Connection errors, timeouts, 429 and 5xx move on to the next route; bad requests do not."""
    return isinstance(err, UpstreamError | RateLimitError | TimeoutError)


def upstream_status_error(provider: str, status: int, body: bytes, headers: Any = None) -> RunyardError:
    """Map a non-2xx upstream answer to our error for it, keeping the upstream's message."""
    message = _upstream_message(body) or f"HTTP {status}"
    text = f"{provider}: upstream returned {status}: {message}"
    if status == 429:
        retry_after = None
        if headers is not None:
            retry_after = parse_retry_after(headers.get("retry-after"))
        return RateLimitError(text, code="upstream_rate_limited", retry_after=retry_after)
    if status in (408, 504):
        return TimeoutError(text, code="upstream_timeout")
    if status >= 500:
        return UpstreamError(text, code="upstream_error")
    if status in (401, 403):
        return UpstreamError(text, code="upstream_auth_failed")
    return InvalidRequestError(text, code="upstream_rejected_request")


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from datetime import datetime, timezone
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _upstream_message(body: bytes) -> str:
    import orjson

    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if err:
            return str(err)
        if data.get("message"):
            return str(data["message"])
    return str(data)[:300]
