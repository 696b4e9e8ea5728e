"""The gateway core: one object holding the configured services, started and closed together."""

from __future__ import annotations

from .backends.recorder import InferenceRecorder
from .backends.store import Store
from .config import RunyardConfig
from .services.ai import AIService
from .services.auth import ApiKeyAuth
from .services.feedback import FeedbackService
from .services.idempotency import IdempotencyCache


class Gateway:
    """Everything a request needs; the server and embedded mode both run exactly this."""

    def __init__(self, config: RunyardConfig) -> None:
        self.config = config
        storage = config.storage
        self.store = Store(storage.url)
        self.recorder = (
            InferenceRecorder(
                self.store,
                flush_interval_s=storage.flush_interval_ms / 1000,
                batch_size=storage.batch_size,
                max_buffer=storage.max_buffer,
            )
            if storage.record_inferences
            else None
        )
        self.ai = AIService(config, self.recorder)
        self.feedback = FeedbackService(self.store, self.recorder, config.metrics)
        self.auth = ApiKeyAuth(config.server.api_keys, self.store)
        self.idempotency = IdempotencyCache(config.server.idempotency_ttl_s)

    async def start(self) -> None:
        await self.store.start()
        await self.auth.start()
        if self.recorder is not None:
            await self.recorder.start()

    async def aclose(self) -> None:
        try:
            if self.recorder is not None:
                await self.recorder.aclose()
        finally:
            await self.ai.aclose()
            await self.store.aclose()
