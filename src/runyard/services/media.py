"""Text-to-speech, speech recognition, image generation and vision: pick a provider that can,
call it (with fallback), record the inference.

A request naming a model (``local::tts``, ``openai::whisper-1``, a configured ``[models]``
name) uses that model's routes whose provider has the capability. With no model, the first
usable of: configured models declaring the capability, then providers that have it here
(local models when installed, OpenAI-compatible upstreams with their credentials). When
nothing can serve the request the answer is 400 ``CAPABILITY_NOT_AVAILABLE``, never a
connection error to a provider that was never set up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..backends.recorder import InferenceRecorder
from ..backends.store import new_id, utcnow
from ..config import MODEL_SEPARATOR, ProviderConfig
from ..errors import CapabilityNotAvailableError, NotFoundError
from ..inference import (
    Attempt,
    ChatOutcome,
    ChatRequest,
    ImageOutcome,
    ImageRequest,
    Outcome,
    RealtimeSession,
    SpeechOutcome,
    SpeechRequest,
    TokenUsage,
    TranscribeOutcome,
    TranscribeRequest,
)
from ..providers import Provider
from .ai import AIService, CallContext
from .fallback import first_delta, first_success
from .recording import inference_row, payload_size
from .streams import SpeechStream

M = TypeVar("M", bound=Outcome)

WHAT = {
    "tts": "text-to-speech",
    "asr": "speech recognition",
    "image": "image generation",
    "vision": "vision (images in chat)",
    "realtime": "realtime sessions",
}
HINTS = {
    "tts": "install the local extra (`pip install 'runyard[local]'`) for local::tts, or configure an "
    "OpenAI-compatible provider with an audio API (e.g. set OPENAI_API_KEY)",
    "asr": "configure an OpenAI-compatible provider with /audio/transcriptions (e.g. set OPENAI_API_KEY, "
    "or point a provider's base_url at a local whisper server)",
    "image": "configure an OpenAI-compatible provider with /images/generations (e.g. set OPENAI_API_KEY)",
    "vision": "configure a provider whose models take images (e.g. set OPENAI_API_KEY or ANTHROPIC_API_KEY)",
    "realtime": "configure an OpenAI-compatible provider with a realtime sessions API (e.g. set OPENAI_API_KEY)",
}
# The model asked of a provider kind when the request names none.
DEFAULT_MODELS: dict[str, dict[str, str]] = {
    "local": {"tts": "tts"},
    "piper": {"tts": "default"},
    "openai": {
        "tts": "gpt-4o-mini-tts",
        "asr": "whisper-1",
        "image": "gpt-image-1",
        "vision": "gpt-4o-mini",
        "realtime": "gpt-4o-realtime-preview",
    },
    "anthropic": {"vision": "claude-3-5-haiku-latest"},
}


@dataclass(frozen=True, slots=True)
class MediaRoute:
    provider: Provider
    model: str
    name: str  # what the caller asked for (or the default picked)

    @property
    def key(self) -> str:
        return f"{self.provider.name}{MODEL_SEPARATOR}{self.model}"


def _declares(provider: Provider, capability: str) -> bool:
    declared = provider.config.options.get("capabilities")
    return capability in (set(declared) if declared is not None else provider.capabilities)


def _has_credentials(config: ProviderConfig) -> bool:
    return config.api_key_env is None or bool(os.environ.get(config.api_key_env))


class MediaService:
    def __init__(self, ai: AIService, recorder: InferenceRecorder | None) -> None:
        self.ai = ai
        self.recorder = recorder

    # -- routing ------------------------------------------------------------------------
    def routes(
        self, model: str | None, capability: str, *, prefer: str | None = None, vendor: str | None = None
    ) -> list[MediaRoute]:
        """A named model's routes that can serve ``capability``; with none named, the catalog's
        models with it ranked by ``prefer`` (of ``vendor``, if named), then configured models
        declaring it, then the first provider that has it here."""
        if model:
            try:
                routes = self.ai.resolve(model)
            except NotFoundError:
                if MODEL_SEPARATOR in model:
                    raise
                raise CapabilityNotAvailableError(
                    f"unknown model {model!r} for {WHAT[capability]}; {HINTS[capability]}"
                ) from None
            # Named: a provider whose kind (or config) declares the capability is asked, and says
            # itself what is missing (a local runtime names the extra to install).
            usable = [MediaRoute(r.provider, r.model, model) for r in routes if _declares(r.provider, capability)]
            if not usable:
                names = ", ".join(sorted({r.provider.name for r in routes}))
                raise CapabilityNotAvailableError(
                    f"model {model!r} cannot do {WHAT[capability]}: provider {names} does not serve it here; "
                    f"{HINTS[capability]}",
                    details={"capability": capability, "model": model},
                )
            return usable
        found: list[MediaRoute] = []
        if prefer is not None:
            for name in self.ai.catalog.media_models(capability, prefer, vendor):
                found.extend(
                    MediaRoute(r.provider, r.model, name)
                    for r in self.ai.resolve(name)
                    if r.provider.supports(capability)
                )
            if found:
                return found
        for name, configured in self.ai.config.models.items():
            if capability not in getattr(configured, "capabilities", ()):
                continue
            for r in configured.routes:
                provider = self.ai.providers[r.provider]
                if vendor and r.provider != vendor:
                    continue
                if provider.supports(capability) and _has_credentials(provider.config):
                    found.append(MediaRoute(provider, r.model, name))
            if found:
                return found
        for pname, provider in self.ai.providers.items():
            if vendor and pname != vendor:
                continue
            default = DEFAULT_MODELS.get(provider.config.kind, {}).get(capability)
            if default and provider.supports(capability) and _has_credentials(provider.config):
                return [MediaRoute(provider, default, f"{pname}{MODEL_SEPARATOR}{default}")]
        raise CapabilityNotAvailableError(
            f"no configured provider{' of vendor ' + repr(vendor) if vendor else ''} can do {WHAT[capability]}; "
            f"{HINTS[capability]}",
            details={"capability": capability},
        )

    async def _run(
        self,
        capability: str,
        model: str | None,
        ctx: CallContext | None,
        call: Callable[[MediaRoute], Awaitable[M]],
        input_: Any,
        output: Callable[[M], Any],
        *,
        routes: list[MediaRoute] | None = None,
    ) -> M:
        """Call the first route that works for ``capability``, stamp the result, record it (the
        inference's kind is the capability: tts, asr, image)."""
        started = time.perf_counter()
        attempts: list[Attempt] = []
        result, route = await first_success(routes or self.routes(model, capability), call, attempts)
        result.model = route.name
        result.latency_ms = (time.perf_counter() - started) * 1000
        result.inference_id = new_id()
        self._record(
            capability, result.inference_id, ctx or CallContext(), route, input_, output(result), result.usage,
            result.latency_ms, attempts,
        )  # fmt: skip
        return result

    # -- text to speech -------------------------------------------------------------------
    async def speech(self, request: SpeechRequest, ctx: CallContext | None = None) -> SpeechOutcome:
        return await self._run(
            "tts",
            request.model,
            ctx,
            lambda r: r.provider.speech(request, r.model),
            {"input": request.input, "voice": request.voice, "format": request.audio_format},
            lambda res: {"bytes": len(res.audio), "media_type": res.media_type, "duration_s": round(res.duration_s, 3)},
        )

    async def open_speech_stream(self, request: SpeechRequest, ctx: CallContext | None = None) -> SpeechStream:
        """Start streamed speech: the first audio bytes are in hand before this returns, so a
        failure to start is an ordinary error response."""
        ctx = ctx or CallContext()
        started = time.perf_counter()
        routes = self.routes(request.model, "tts")
        attempts: list[Attempt] = []
        (first, upstream), route = await first_success(
            routes, lambda r: first_delta(r.provider.stream_speech(request, r.model), b""), attempts
        )
        return SpeechStream(self, request, ctx, route, attempts, first, upstream, started)

    # -- speech to text -------------------------------------------------------------------
    async def transcribe(self, request: TranscribeRequest, ctx: CallContext | None = None) -> TranscribeOutcome:
        return await self._run(
            "asr",
            request.model,
            ctx,
            lambda r: r.provider.transcribe(request, r.model),
            {"filename": request.filename, "bytes": len(request.audio), "language": request.language},
            lambda res: {"text": res.text, "language": res.language, "segments": len(res.segments or ())},
        )

    # -- realtime sessions ----------------------------------------------------------------
    async def realtime_token(
        self,
        model: str | None,
        *,
        voice: str | None = None,
        ttl_seconds: int | None = None,
        vendor: str | None = None,
    ) -> RealtimeSession:
        """Mint a short-lived session token for a realtime-capable provider (not recorded as an
        inference: no tokens are spent until the client connects with it)."""
        attempts: list[Attempt] = []
        routes = self.routes(model, "realtime", vendor=vendor)
        session, route = await first_success(
            routes, lambda r: r.provider.realtime_session(r.model, voice=voice, ttl_seconds=ttl_seconds), attempts
        )
        session.model = route.name
        return session

    # -- images ---------------------------------------------------------------------------
    async def generate_image(
        self,
        request: ImageRequest,
        ctx: CallContext | None = None,
        *,
        prefer: str | None = None,
        vendor: str | None = None,
    ) -> ImageOutcome:
        """Generate images; with no model, routed over the catalog's image models by ``prefer``."""
        return await self._run(
            "image",
            request.model,
            ctx,
            lambda r: r.provider.generate_image(request, r.model),
            request.model_dump(exclude_none=True),
            lambda res: {"count": len(res.images)},
            routes=self.routes(request.model, "image", prefer=prefer, vendor=vendor),
        )

    # -- vision: a chat whose provider takes images ---------------------------------------
    async def vision(self, request: ChatRequest, ctx: CallContext | None = None) -> ChatOutcome:
        routes = self.routes(request.model, "vision")
        if not request.model:
            request = request.model_copy(update={"model": routes[0].name})
        return await self.ai.chat(request, ctx)

    # -- recording ------------------------------------------------------------------------
    def _record(
        self,
        kind: str,
        inference_id: str,
        ctx: CallContext,
        route: MediaRoute,
        input_: Any,
        output: Any,
        usage: TokenUsage,
        latency_ms: float,
        attempts: list[Attempt],
        *,
        ttft_ms: float | None = None,
        status: str = "ok",
        error: str | None = None,
    ) -> None:
        if self.recorder is None:
            return
        created = utcnow()

        def build() -> dict[str, Any]:
            return inference_row(
                kind, inference_id, ctx.episode_id, route.name, route.provider.name, route.model, input_, output,
                usage, latency_ms, ttft_ms, status, error, attempts, ctx, created, None, False,
            )  # fmt: skip

        self.recorder.record(inference_id, ctx.episode_id, build, payload_size(input_))
