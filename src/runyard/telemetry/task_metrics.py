"""Task figures read from the store at scrape time: exact across every gateway and
``runyard worker`` process, whichever process answers ``/metrics``, with no call in the
task path. ``runyard_tasks_total{app,status}``, ``runyard_queue_depth{pool}`` and
``runyard_task_duration_seconds{app}`` (finished tasks, read once each, then remembered)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from ..backends.schema import tasks
from ..backends.store import Store

TASK_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
FINISHED = ("completed", "failed", "cancelled")


class _Durations:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(TASK_BUCKETS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(TASK_BUCKETS, seconds)] += 1
        self.count += 1
        self.total += seconds


class TaskMetrics:
    """A prometheus_client collector over a snapshot that :meth:`refresh` reads from the store."""

    def __init__(self, store: Store, pools: list[str]) -> None:
        self._store = store
        self._pools = pools
        self._counts: dict[tuple[str, str], int] = {}
        self._queued: dict[str, int] = {}
        self._durations: dict[str, _Durations] = {}
        self._since: datetime | None = None  # finished_at of the newest finished task counted
        self._seen_at_since: set[str] = set()  # ids finished exactly then (counted already)

    async def refresh(self) -> None:
        async with self._store.engine.connect() as conn:
            counts = await conn.execute(
                sa.select(tasks.c.app, tasks.c.status, sa.func.count()).group_by(tasks.c.app, tasks.c.status)
            )
            queued = await conn.execute(
                sa.select(tasks.c.pool, sa.func.count()).where(tasks.c.status == "queued").group_by(tasks.c.pool)
            )
            finished = sa.select(tasks.c.id, tasks.c.app, tasks.c.started_at, tasks.c.finished_at).where(
                tasks.c.status.in_(FINISHED), tasks.c.finished_at.is_not(None)
            )
            if self._since is not None:
                finished = finished.where(tasks.c.finished_at >= self._since)
            done = await conn.execute(finished.order_by(tasks.c.finished_at))
            self._counts = {(app, status): n for app, status, n in counts}
            self._queued = dict.fromkeys(self._pools, 0) | {pool: n for pool, n in queued}
            self._count_durations(list(done.all()))

    def _count_durations(self, rows: list[Any]) -> None:
        for task_id, app, started, ended in rows:
            if self._since is not None and ended == self._since and task_id in self._seen_at_since:
                continue
            if ended != self._since:
                self._since, self._seen_at_since = ended, set()
            self._seen_at_since.add(task_id)
            if started is not None:
                self._durations.setdefault(app, _Durations()).observe(max(0.0, (ended - started).total_seconds()))

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily("runyard_tasks", "tasks by app and status", labels=["app", "status"])
        for (app, status), n in sorted(self._counts.items()):
            total.add_metric([app, status], n)
        yield total
        depth = GaugeMetricFamily("runyard_queue_depth", "tasks waiting in each pool", labels=["pool"])
        for pool, n in sorted(self._queued.items()):
            depth.add_metric([pool], n)
        yield depth
        hist = HistogramMetricFamily("runyard_task_duration_seconds", "task run time", labels=["app"])
        for app, d in sorted(self._durations.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*map(str, TASK_BUCKETS), "+Inf"), d.buckets, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            hist.add_metric([app], buckets, d.total)
        yield hist
