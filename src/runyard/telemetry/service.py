"""One gateway process's telemetry, built from ``[telemetry]``: what ``create_app`` wires in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..config import TelemetryConfig
from . import tracing
from .inference import InferenceTelemetry
from .logs import AccessLog

log = logging.getLogger("runyard.telemetry")

SAMPLE_EVERY_S = 5.0  # process gauges (recorder backlog, circuits) refreshed this often


class Telemetry:
    """Metrics (None when ``metrics = false``), tracing (None without ``otlp_endpoint``), the
    access log (None when off) and the AI service's instrumentation over them.

    Built before the gateway (its :attr:`inference` is the AI service's collaborator); what reads
    the running gateway comes with :meth:`start`: ``sample`` reads this process's state into gauges,
    ``task_metrics`` is the store-derived task collector. ``span_exporter`` replaces OTLP (tests);
    ``redact`` cleans error text put on spans (telemetry/logs.py's :class:`Redactor`).
    """

    def __init__(
        self,
        config: TelemetryConfig,
        *,
        known_models: Iterable[str] = (),
        span_exporter: Any = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.config = config
        self.metrics: Any = None
        if config.metrics:
            from .metrics import Metrics

            self.metrics = Metrics(known_models)
        self.task_metrics: Any = None
        self.tracing: tracing.Tracing | None = None
        if config.otlp_endpoint or span_exporter is not None:
            self.tracing = tracing.Tracing(
                config.otlp_endpoint or "", config.service_name, config.sample_ratio, span_exporter, redact
            )
        self.access_log = AccessLog() if config.access_log else None
        self.inference = InferenceTelemetry(self.metrics)
        self._sample: Callable[[Any], None] | None = None
        self._sampler: asyncio.Task[None] | None = None

    async def start(self, *, task_metrics: Any = None, sample: Callable[[Any], None] | None = None) -> None:
        self.task_metrics, self._sample = task_metrics, sample
        if self.metrics is not None and task_metrics is not None:
            self.metrics.add_collector(task_metrics)
        tracing.install(self.tracing)
        if self.metrics is not None and self.metrics.multiprocess and self._sample is not None:
            self._sampler = asyncio.create_task(self._sample_forever(), name="runyard-metrics-sampler")

    def sample(self) -> None:
        if self.metrics is not None and self._sample is not None:
            self._sample(self.metrics)

    async def _sample_forever(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:
                log.exception("sampling gauges failed")
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def aclose(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self.metrics is not None:
            self.metrics.mark_process_dead()
        if self.tracing is not None:
            tracing.install(None)
            await asyncio.to_thread(self.tracing.shutdown)  # exports what is queued
