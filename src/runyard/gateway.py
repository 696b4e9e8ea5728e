"""The gateway core: one object holding the configured services, started and closed together."""

from __future__ import annotations

from typing import Any

from .backends.queue import SQLTaskQueue
from .backends.recorder import InferenceRecorder
from .backends.store import Store
from .config import RunyardConfig
from .services.agents import AgentService
from .services.ai import AIService
from .services.apps import AppRegistry
from .services.auth import ApiKeyAuth
from .services.feedback import FeedbackService
from .services.files import FileService
from .services.idempotency import IdempotencyCache
from .services.limits import LimitService
from .services.media import MediaService
from .services.tasks import TaskService
from .services.workflows import WorkflowService


class Gateway:
    """Everything a request needs; the server and embedded mode both run exactly this."""

    def __init__(self, config: RunyardConfig, *, run_worker: bool = False) -> None:
        """``run_worker``: also run an in-process task worker over all pools (see :mod:`runyard.worker`)."""
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
        self.media = MediaService(self.ai, self.recorder)  # tts, asr, images, vision
        self.feedback = FeedbackService(self.store, self.recorder, config.metrics)
        self.limits = LimitService(config.limits, self.store)
        self.ai.usage_observers.append(self.limits.observe)
        self.auth = ApiKeyAuth(
            config.server.api_keys, self.store, self.limits, refresh_s=config.server.api_key_refresh_s
        )
        self.idempotency = IdempotencyCache(config.server.idempotency_ttl_s)
        self.files = FileService.from_config(self.store, config.files)
        self.apps = AppRegistry(config)
        self.tasks = TaskService(config, SQLTaskQueue(self.store), self.apps)
        self.tasks.files = self.files
        self.agents = AgentService(self)
        self.workflows = WorkflowService(self)  # its runs are tasks of the runyard/workflow app
        self.apps.register(self.workflows.app_definition)
        self.tasks.workflows = self.workflows
        self.run_worker = run_worker
        self.worker: Any = None

    async def start(self) -> None:
        await self.store.start()
        await self.auth.start()
        await self.files.start()
        if self.recorder is not None:
            await self.recorder.start()
        self.apps.load()
        await self.tasks.start()
        if self.run_worker:
            from .worker import Worker

            self.worker = Worker(self)
            await self.worker.start()

    async def aclose(self) -> None:
        try:
            if self.worker is not None:
                await self.worker.aclose()
            await self.tasks.aclose()
            if self.recorder is not None:
                await self.recorder.aclose()
        finally:
            await self.auth.aclose()
            await self.limits.aclose()
            await self.ai.aclose()
            await self.files.aclose()
            await self.store.aclose()
