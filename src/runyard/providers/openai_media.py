"""Audio and image APIs of OpenAI-compatible upstreams: ``/audio/speech``,
``/audio/transcriptions``, ``/images/generations`` (mixed into :class:`OpenAIProvider`).

``options.capabilities`` (a list) narrows what an upstream is asked for: an Ollama or vLLM
server usually has chat and embeddings only, e.g. ``capabilities = ["chat", "embed"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..config import ProviderConfig
from ..errors import UpstreamError
from ..inference import (
    AUDIO_MEDIA_TYPES,
    ImageOutcome,
    ImageRequest,
    RealtimeSession,
    SpeechOutcome,
    SpeechRequest,
    TokenUsage,
    TranscribeOutcome,
    TranscribeRequest,
)
from .http import UpstreamClient, endpoint

MEDIA_CAPABILITIES = frozenset({"tts", "asr", "image", "realtime"})
# Models that answer ``response_format=verbose_json`` (language, segments); others get ``json``.
VERBOSE_ASR_PREFIXES = ("whisper",)


class OpenAIMediaMixin:
    name: str
    config: ProviderConfig
    capabilities: frozenset[str]
    _http: UpstreamClient

    def supports(self, capability: str) -> bool:
        declared = self.config.options.get("capabilities")
        if declared is not None:
            return capability in set(declared)
        return capability in self.capabilities

    def _media_url(self, path: str) -> Any:
        return endpoint(self.config.base_url or "https://api.openai.com/v1", path)

    async def speech(self, request: SpeechRequest, model: str) -> SpeechOutcome:
        body = request.model_dump(exclude_none=True, exclude={"stream"})
        body["model"] = model
        body.setdefault("voice", "alloy")
        fmt = request.audio_format
        body["response_format"] = fmt
        audio, content_type = await self._http.post(
            self._media_url("/audio/speech"), orjson.dumps(body), "application/json"
        )
        return SpeechOutcome(
            audio=audio,
            media_type=AUDIO_MEDIA_TYPES.get(fmt, content_type),
            usage=TokenUsage(input_tokens=len(request.input)),
            provider=self.name,
            provider_model=model,
        )

    async def stream_speech(self, request: SpeechRequest, model: str) -> AsyncIterator[bytes]:
        result = await self.speech(request, model)
        yield result.audio

    async def transcribe(self, request: TranscribeRequest, model: str) -> TranscribeOutcome:
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("file", request.audio, filename=request.filename, content_type=request.content_type)
        form.add_field("model", model)
        verbose = model.startswith(VERBOSE_ASR_PREFIXES) or bool(self.config.options.get("verbose_transcriptions"))
        form.add_field("response_format", "verbose_json" if verbose else "json")
        if request.language:
            form.add_field("language", request.language)
        if request.prompt:
            form.add_field("prompt", request.prompt)
        if request.temperature is not None:
            form.add_field("temperature", str(request.temperature))
        raw, _ = await self._http.post(self._media_url("/audio/transcriptions"), form)
        try:
            data = orjson.loads(raw)
            text = str(data["text"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as err:
            raise UpstreamError(
                f"{self.name}: unreadable transcription response ({type(err).__name__})",
                code="upstream_invalid_response",
            ) from None
        usage = data.get("usage") or {}
        segments = data.get("segments")
        return TranscribeOutcome(
            text=text,
            language=data.get("language"),
            duration_s=data.get("duration"),
            segments=[
                {k: seg.get(k) for k in ("id", "start", "end", "text")} for seg in segments if isinstance(seg, dict)
            ]
            if isinstance(segments, list)
            else None,
            usage=TokenUsage(
                input_tokens=int(usage.get("input_tokens") or 0), output_tokens=int(usage.get("output_tokens") or 0)
            ),
            provider=self.name,
            provider_model=model,
        )

    async def realtime_session(
        self, model: str, *, voice: str | None = None, ttl_seconds: int | None = None
    ) -> RealtimeSession:
        """``POST /realtime/sessions``: an ephemeral client secret for a realtime session."""
        body: dict[str, Any] = {"model": model}
        if voice:
            body["voice"] = voice
        if ttl_seconds:
            body["client_secret"] = {"expires_after": {"anchor": "created_at", "seconds": ttl_seconds}}
        raw, _ = await self._http.post(self._media_url("/realtime/sessions"), orjson.dumps(body), "application/json")
        try:
            data = orjson.loads(raw)
            secret = data["client_secret"]
            token, expires_at = str(secret["value"]), int(secret["expires_at"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise UpstreamError(
                f"{self.name}: unreadable realtime session response ({type(err).__name__})",
                code="upstream_invalid_response",
            ) from None
        ice = self.config.options.get("ice_servers")
        return RealtimeSession(
            session_id=str(data.get("id") or ""),
            token=token,
            expires_at=expires_at,
            ice_servers=list(ice) if isinstance(ice, list) else [],
            provider=self.name,
            provider_model=model,
            voice=data.get("voice") or voice,
        )

    async def generate_image(self, request: ImageRequest, model: str) -> ImageOutcome:
        body = request.model_dump(exclude_none=True)
        body["model"] = model
        raw, _ = await self._http.post(self._media_url("/images/generations"), orjson.dumps(body), "application/json")
        try:
            data = orjson.loads(raw)
            images = [
                {k: v for k, v in item.items() if k in ("b64_json", "url", "revised_prompt")} for item in data["data"]
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise UpstreamError(
                f"{self.name}: unreadable image response ({type(err).__name__})", code="upstream_invalid_response"
            ) from None
        usage = data.get("usage") or {}
        return ImageOutcome(
            images=images,
            usage=TokenUsage(
                input_tokens=int(usage.get("input_tokens") or 0), output_tokens=int(usage.get("output_tokens") or 0)
            ),
            provider=self.name,
            provider_model=model,
        )
