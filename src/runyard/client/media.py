"""``client.ai.tts``, ``client.ai.asr``, ``client.ai.image.generate`` and ``client.ai.vision``.

Async methods live on the mixins of :class:`~runyard.client.ai.AsyncAI`; the blocking twins
drive them through the client's portal, like the rest of the SDK.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pydantic import Field

from runyard.client.types import ChatResult, Usage, _Model

if TYPE_CHECKING:
    from runyard.client._base import AsyncAPIClient
    from runyard.client._sync import Portal

__all__ = ["ImageResult", "RealtimeToken", "SpeechResult", "TranscriptionResult"]

TTS_PATH = "/v1/ai/tts"
ASR_PATH = "/v1/ai/asr"
IMAGE_PATH = "/v1/ai/image"
VISION_PATH = "/v1/ai/vision"
REALTIME_TOKEN_PATH = "/v1/ai/realtime/token"

# A path, bytes, a binary file, or Infrai's {"url": ...} / {"base64": ..., "mime": ...}.
AudioInput = str | os.PathLike[str] | bytes | BinaryIO | dict[str, str]
# A URL, a data: URI, base64 text, or {"url": ...} / {"base64": ..., "mime": ...}.
ImageInput = str | dict[str, str]


class SpeechResult(_Model):
    """Synthesised audio: ``audio`` (bytes of ``media_type``) and where it came from."""

    audio: bytes = b""
    media_type: str = "audio/wav"
    inference_id: str | None = None
    provider: str | None = None
    model: str | None = None
    sample_rate: int | None = None
    duration_s: float | None = None
    format: str | None = None  # wav, pcm, mp3, ...
    audio_url: str | None = None  # the stored copy (GET it with the client's credentials)
    file_id: str | None = None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the audio to ``path`` and return it."""
        target = Path(path)
        target.write_bytes(self.audio)
        return target


class TranscriptionResult(_Model):
    text: str = ""
    language: str | None = None
    segments: list[dict[str, Any]] | None = None  # [{id, start, end, text}] when the model gives them
    duration_s: float | None = None
    inference_id: str | None = None
    model: str | None = None
    provider: str | None = None
    usage: Usage | None = None


class ImageResult(_Model):
    """Generated images: each ``{"b64_json": ...}`` or ``{"url": ...}``."""

    images: list[dict[str, Any]] = Field(default_factory=list)
    inference_id: str | None = None
    model: str | None = None
    provider: str | None = None
    usage: Usage | None = None

    def image_bytes(self, index: int = 0) -> bytes:
        """The decoded bytes of a ``b64_json`` image."""
        data = self.images[index].get("b64_json")
        if not data:
            raise ValueError("this image came as a URL; fetch it from images[i]['url']")
        return base64.b64decode(data)


class RealtimeToken(_Model):
    """A short-lived realtime session credential: connect to the provider with ``token``."""

    session_id: str = ""
    token: str = ""
    expires_at: int = 0  # unix seconds
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    model: str | None = None
    provider: str | None = None
    voice: str | None = None


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _speech(response: Any) -> SpeechResult:
    h = response.headers
    rate = h.get("x-runyard-sample-rate")
    duration = h.get("x-runyard-duration-s")
    return SpeechResult(
        audio=response.content,
        media_type=h.get("content-type", "application/octet-stream").split(";")[0],
        inference_id=h.get("x-runyard-inference-id"),
        provider=h.get("x-runyard-provider"),
        model=h.get("x-runyard-model"),
        sample_rate=int(rate) if rate else None,
        duration_s=float(duration) if duration else None,
        format=h.get("x-runyard-format"),
        audio_url=h.get("x-runyard-audio-url"),
        file_id=h.get("x-runyard-file-id"),
    )


def _speech_text(text: str | None, input: str | None) -> str:
    """``tts("...")`` or Infrai's ``tts(input="...")``."""
    value = input if text is None else text
    if not isinstance(value, str):
        raise TypeError("tts() needs the text: tts('Hello') or tts(input='Hello')")
    return value


def _images(image: ImageInput | list[ImageInput] | None, images: list[ImageInput] | None) -> list[ImageInput]:
    picked = list(images or [])
    if image is not None:
        picked[:0] = image if isinstance(image, list) else [image]
    if not picked:
        raise TypeError("vision() needs an image: vision(prompt, 'https://...') or vision(prompt=..., images=[...])")
    return picked


def _audio_file(audio: bytes | str | os.PathLike[str] | BinaryIO, filename: str | None) -> tuple[str, bytes]:
    if isinstance(audio, bytes):
        return filename or "audio.wav", audio
    if isinstance(audio, str | os.PathLike):
        path = Path(audio)
        return filename or path.name, path.read_bytes()
    data = audio.read()
    return filename or Path(str(getattr(audio, "name", "audio.wav"))).name, data


class AsyncImages:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        n: int | None = None,
        size: str | None = None,
        quality: str | None = None,
        response_format: str | None = None,
        **extra: Any,
    ) -> ImageResult:
        """Generate images (``POST /v1/ai/image``) with a provider that can."""
        body = _body(
            prompt=prompt, model=model, n=n, size=size, quality=quality, response_format=response_format, **extra
        )
        return ImageResult.model_validate(await self._client.request("POST", IMAGE_PATH, json=body))


class Images:
    def __init__(self, inner: AsyncImages, portal: Portal) -> None:
        self._async = inner
        self._portal = portal

    def generate(self, prompt: str, **kwargs: Any) -> ImageResult:
        """Generate images; see :meth:`AsyncImages.generate`."""
        return self._portal.call(self._async.generate(prompt, **kwargs))


class AsyncMediaMixin:
    _client: AsyncAPIClient

    async def tts(
        self,
        text: str | None = None,
        *,
        input: str | None = None,
        model: str | None = None,
        voice: str | None = None,
        format: str | None = None,
        speed: float | None = None,
        **extra: Any,
    ) -> SpeechResult:
        """Text to speech (``POST /v1/ai/tts``): WAV by default (``format="pcm"`` for raw 16-bit).
        With no model, a provider that can speak is picked (``local::tts`` when installed). The
        result has the bytes and ``audio_url``, the stored copy (``store=False`` skips it)."""
        body = _body(input=_speech_text(text, input), model=model, voice=voice, format=format, speed=speed, **extra)
        headers = self._client._headers("POST", None, True)
        response = await self._client._send("POST", TTS_PATH, json=body, params=None, headers=headers, stream=False)
        return _speech(response)

    async def tts_stream(
        self,
        text: str | None = None,
        *,
        input: str | None = None,
        model: str | None = None,
        voice: str | None = None,
        format: str | None = None,
        speed: float | None = None,
        **extra: Any,
    ) -> AsyncIterator[bytes]:
        """Text to speech, as the audio is made (WAV header first for ``wav``)."""
        body = _body(
            input=_speech_text(text, input), model=model, voice=voice, format=format, speed=speed, stream=True, **extra
        )
        headers = self._client._headers("POST", None, True)
        response = await self._client._send("POST", TTS_PATH, json=body, params=None, headers=headers, stream=True)
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        finally:
            await response.aclose()

    async def asr(
        self,
        audio: AudioInput,
        *,
        model: str | None = None,
        language: str | None = None,
        prompt: str | None = None,
        filename: str | None = None,
    ) -> TranscriptionResult:
        """Speech to text (``POST /v1/ai/asr``): a path, bytes, a binary file, or ``{"url": ...}``
        (fetched by the gateway) / ``{"base64": ..., "mime": ...}``."""
        fields = _body(model=model, language=language, prompt=prompt)
        if isinstance(audio, dict):
            body = {**fields, "audio": audio, **({"filename": filename} if filename else {})}
            return TranscriptionResult.model_validate(await self._client.request("POST", ASR_PATH, json=body))
        name, data = _audio_file(audio, filename)
        result = await self._client.request("POST", ASR_PATH, files={"file": (name, data)}, data=fields, max_retries=0)
        return TranscriptionResult.model_validate(result)

    async def vision(
        self,
        prompt: str,
        image: ImageInput | list[ImageInput] | None = None,
        *,
        images: list[ImageInput] | None = None,
        model: str | None = None,
        detail: str | None = None,
        max_tokens: int | None = None,
        **extra: Any,
    ) -> ChatResult:
        """Ask about images (``POST /v1/ai/vision``): URLs, data: URIs, base64 text, or
        ``{"url": ...}`` / ``{"base64": ..., "mime": ...}`` (``images=[...]``, Infrai's form)."""
        body = _body(
            prompt=prompt, images=_images(image, images), model=model, detail=detail, max_tokens=max_tokens, **extra
        )
        return ChatResult.model_validate(await self._client.request("POST", VISION_PATH, json=body))


class AsyncRealtime:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def token(
        self,
        *,
        model: str | None = None,
        voice: str | None = None,
        ttl_seconds: int | None = None,
        vendor: str | None = None,
    ) -> RealtimeToken:
        """A short-lived realtime session token (``POST /v1/ai/realtime/token``)."""
        body = _body(model=model, voice=voice, ttl_seconds=ttl_seconds, vendor=vendor)
        return RealtimeToken.model_validate(await self._client.request("POST", REALTIME_TOKEN_PATH, json=body))


class Realtime:
    def __init__(self, inner: AsyncRealtime, portal: Portal) -> None:
        self._async = inner
        self._portal = portal

    def token(self, **kwargs: Any) -> RealtimeToken:
        """A short-lived realtime session token; see :meth:`AsyncRealtime.token`."""
        result: RealtimeToken = self._portal.call(self._async.token(**kwargs))
        return result


class MediaMixin:
    _async: Any
    _portal: Portal

    def tts(self, text: str | None = None, **kwargs: Any) -> SpeechResult:
        """Text to speech; see :meth:`AsyncMediaMixin.tts`."""
        result: SpeechResult = self._portal.call(self._async.tts(text, **kwargs))
        return result

    def tts_stream(self, text: str | None = None, **kwargs: Any) -> Iterator[bytes]:
        """Text to speech as it is made; see :meth:`AsyncMediaMixin.tts_stream`."""
        return self._portal.iterate(self._async.tts_stream(text, **kwargs))

    def asr(self, audio: AudioInput, **kwargs: Any) -> TranscriptionResult:
        """Speech to text; see :meth:`AsyncMediaMixin.asr`."""
        result: TranscriptionResult = self._portal.call(self._async.asr(audio, **kwargs))
        return result

    def vision(self, prompt: str, image: ImageInput | list[ImageInput] | None = None, **kwargs: Any) -> ChatResult:
        """Ask about images; see :meth:`AsyncMediaMixin.vision`."""
        result: ChatResult = self._portal.call(self._async.vision(prompt, image, **kwargs))
        return result
