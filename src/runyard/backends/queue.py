"""The task queue: a small interface and its embedded implementation over the store (SQL).

Claiming is one atomic ``UPDATE … WHERE id = (SELECT … LIMIT 1) AND status = 'queued'``
(SQLite serialises writers; on Postgres the sub-select adds ``FOR UPDATE SKIP LOCKED``).
A claim holds a lease (``lease_until``) that the worker extends by heartbeats; a lease that
runs out means the worker died: :meth:`SQLTaskQueue.requeue_expired` puts the task back,
or fails it once ``attempts`` reached ``max_attempts``. Every status change also appends a
``status`` event, in the same transaction, so the event log alone tells the whole story.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

import sqlalchemy as sa

from .records import SessionRecord, TaskEvent, TaskRecord
from .schema import api_keys, sessions, task_events, tasks
from .store import Store, utcnow

__all__ = ["TERMINAL", "SQLTaskQueue", "TaskQueue"]

TERMINAL = frozenset({"completed", "failed", "cancelled"})


class TaskQueue(Protocol):
    """What workers need from a queue (Postgres / Redis implementations come later)."""

    async def enqueue(self, task: TaskRecord) -> None: ...
    async def claim(self, pool: str, worker_id: str, lease_s: float) -> TaskRecord | None: ...
    async def heartbeat(
        self, task_id: str, worker_id: str, lease_s: float, *, attempt: int | None = None
    ) -> bool | None: ...
    async def release(
        self, task_id: str, worker_id: str, affinity: str | None, *, attempt: int | None = None
    ) -> None: ...
    async def finish(
        self,
        task_id: str,
        worker_id: str,
        status: str,
        *,
        attempt: int | None = None,
        output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> bool: ...
    async def requeue_expired(self) -> list[str]: ...


class SQLTaskQueue:
    """Queue + task records over the store's engine (SQLite in WAL mode by default)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        self._postgres = store.url.get_backend_name() == "postgresql"
        # SQLite has one writer at a time; queueing writers here (instead of in SQLite's busy
        # handler, which sleeps up to 100 ms between tries) keeps latency flat under load.
        self._lock: Any = asyncio.Lock() if not self._postgres else contextlib.nullcontext()

    # -- queue ------------------------------------------------------------------
    async def enqueue(self, task: TaskRecord) -> None:
        async with self._lock, self.engine.begin() as conn:
            await conn.execute(tasks.insert().values(**task.values()))
            await conn.execute(_event(task.id, "status", {"status": task.status}))

    async def claim(self, pool: str, worker_id: str, lease_s: float) -> TaskRecord | None:
        """Atomically take the oldest queued task of ``pool`` (one this worker may run)."""
        pick = (
            sa.select(tasks.c.id)
            .where(
                tasks.c.pool == pool,
                tasks.c.status == "queued",
                sa.or_(tasks.c.affinity.is_(None), tasks.c.affinity == worker_id),
            )
            .order_by(tasks.c.id)
            .limit(1)
        )
        if self._postgres:
            pick = pick.with_for_update(skip_locked=True)
        stmt = (
            sa.update(tasks)
            .where(tasks.c.id == pick.scalar_subquery(), tasks.c.status == "queued")
            .values(
                status="processing",
                worker_id=worker_id,
                lease_until=time.time() + lease_s,
                attempts=tasks.c.attempts + 1,
                started_at=sa.func.coalesce(tasks.c.started_at, utcnow()),
            )
            .returning(*tasks.c)
        )
        async with self._lock, self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            task = TaskRecord.from_row(row)
            await conn.execute(_event(task.id, "status", {"status": "processing", "attempt": task.attempts}))
        return task

    async def heartbeat(
        self, task_id: str, worker_id: str, lease_s: float, *, attempt: int | None = None
    ) -> bool | None:
        """Extend the lease; returns ``cancel_requested``, or ``None`` if the lease was lost.
        ``attempt`` (here and in ``release``/``finish``): the claim's, so a copy whose lease ran
        out is fenced off even when the same worker claimed the task again."""
        stmt = (
            sa.update(tasks)
            .where(_held(task_id, worker_id, attempt))
            .values(lease_until=time.time() + lease_s)
            .returning(tasks.c.cancel_requested)
        )
        async with self._lock, self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else bool(row[0])

    async def release(self, task_id: str, worker_id: str, affinity: str | None, *, attempt: int | None = None) -> None:
        """Give a claimed task back unrun (not counted as an attempt), optionally pinned to a worker."""
        stmt = (
            sa.update(tasks)
            .where(_held(task_id, worker_id, attempt))
            .values(status="queued", worker_id=None, lease_until=None, affinity=affinity, attempts=tasks.c.attempts - 1)
        )
        async with self._lock, self.engine.begin() as conn:
            await conn.execute(stmt)

    async def finish(
        self,
        task_id: str,
        worker_id: str,
        status: str,
        *,
        attempt: int | None = None,
        output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """Record the outcome; ``False`` if this worker no longer holds the task."""
        values: dict[str, Any] = {"status": status, "output": output, "error": error, "finished_at": utcnow()}
        values["lease_until"] = None
        if status == "completed":
            values["progress"] = 1.0
        stmt = sa.update(tasks).where(_held(task_id, worker_id, attempt)).values(**values)
        async with self._lock, self.engine.begin() as conn:
            if (await conn.execute(stmt)).rowcount != 1:
                return False
            await conn.execute(_event(task_id, "status", _status_event(status, error)))
        return True

    async def requeue_expired(self) -> list[str]:
        """Handle leases that ran out; returns the ids of tasks this made terminal. A session
        whose worker stopped renewing its lease ends first (its queued runs then fail)."""
        now = time.time()
        expired = sa.and_(tasks.c.status == "processing", tasks.c.lease_until < now)
        finalized: list[str] = []
        async with self._lock, self.engine.begin() as conn:
            await conn.execute(
                sa.update(sessions)
                .where(sessions.c.status == "active", sessions.c.lease_until < now)
                .values(status="expired")
            )
            steps: list[tuple[Any, str, dict[str, Any] | None]] = [
                (sa.and_(expired, tasks.c.cancel_requested.is_(True)), "cancelled", None),
                (
                    sa.and_(expired, tasks.c.session_id.is_not(None)),
                    "failed",
                    {"code": "SESSION_EXPIRED", "message": "the worker holding this task's session was lost"},
                ),
                (
                    sa.and_(expired, tasks.c.attempts >= tasks.c.max_attempts),
                    "failed",
                    {
                        "code": "max_attempts_exceeded",
                        "message": "the worker running this task stopped heartbeating (lease expired) "
                        "and the task reached max_attempts",
                    },
                ),
                (
                    sa.and_(
                        tasks.c.status == "queued",
                        tasks.c.session_id.in_(
                            sa.select(sessions.c.id).where(
                                sa.or_(sessions.c.status != "active", sessions.c.expires_at < now)
                            )
                        ),
                    ),
                    "failed",
                    {"code": "SESSION_EXPIRED", "message": "the task's session expired or was ended"},
                ),
            ]
            for where, status, error in steps:
                stmt = (
                    sa.update(tasks)
                    .where(where)
                    .values(status=status, error=error, finished_at=utcnow(), lease_until=None)
                    .returning(tasks.c.id)
                )
                ids = [r[0] for r in await conn.execute(stmt)]
                for task_id in ids:
                    await conn.execute(_event(task_id, "status", _status_event(status, error)))
                finalized += ids
            stmt = (
                sa.update(tasks)
                .where(expired)
                .values(status="queued", worker_id=None, lease_until=None)
                .returning(tasks.c.id, tasks.c.attempts)
            )
            for task_id, attempts in (await conn.execute(stmt)).all():
                await conn.execute(_event(task_id, "status", {"status": "queued", "requeued_after_attempt": attempts}))
        return finalized

    # -- records ----------------------------------------------------------------
    async def request_cancel(self, task_id: str) -> tuple[str | None, bool]:
        """Cancel a queued task now, or flag a processing one: (the status after, None if unknown;
        whether this call cancelled it, so one caller alone reports it)."""
        async with self._lock, self.engine.begin() as conn:
            done = await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == task_id, tasks.c.status == "queued")
                .values(status="cancelled", finished_at=utcnow())
            )
            if done.rowcount == 1:
                await conn.execute(_event(task_id, "status", {"status": "cancelled"}))
                return "cancelled", True
            await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == task_id, tasks.c.status == "processing")
                .values(cancel_requested=True)
            )
            row = (await conn.execute(sa.select(tasks.c.status).where(tasks.c.id == task_id))).first()
        return (None if row is None else str(row[0])), False

    async def get(self, task_id: str) -> TaskRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).first()
        return TaskRecord.from_row(row) if row else None

    async def status_of(self, task_id: str) -> str | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(tasks.c.status).where(tasks.c.id == task_id))).first()
        return None if row is None else str(row[0])

    async def list_tasks(
        self,
        *,
        app: str | None,
        version: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
        workspace: str | None = None,
    ) -> list[TaskRecord]:
        """Newest first; ``workspace``: only tasks created by that workspace's keys."""
        query = sa.select(tasks).order_by(tasks.c.id.desc()).limit(limit)
        if workspace is not None:
            members = sa.select(api_keys.c.id).where(api_keys.c.workspace == workspace)
            query = query.where(tasks.c.api_key_id.in_(members.scalar_subquery()))
        if app:
            query = query.where(tasks.c.app == app)
        if version:
            query = query.where(tasks.c.version == version)
        if status:
            query = query.where(tasks.c.status == status)
        if cursor:
            query = query.where(tasks.c.id < cursor)
        async with self.engine.connect() as conn:
            return [TaskRecord.from_row(r) for r in await conn.execute(query)]

    async def add_events(self, task_id: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Append log/progress events (and keep the latest progress on the task row)."""
        if not events:
            return
        now = utcnow()
        rows = [{"task_id": task_id, "type": kind, "data": data, "created_at": now} for kind, data in events]
        progress = [d["progress"] for kind, d in events if kind == "progress"]
        async with self._lock, self.engine.begin() as conn:
            await conn.execute(task_events.insert(), rows)
            if progress:
                await conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(progress=progress[-1]))

    async def events(self, task_id: str, after: int = 0, types: tuple[str, ...] | None = None) -> list[TaskEvent]:
        query = (
            sa.select(task_events.c.seq, task_events.c.type, task_events.c.data, task_events.c.created_at)
            .where(task_events.c.task_id == task_id, task_events.c.seq > after)
            .order_by(task_events.c.seq)
        )
        if types:
            query = query.where(task_events.c.type.in_(types))
        async with self.engine.connect() as conn:
            return [TaskEvent.from_row(r) for r in await conn.execute(query)]

    # -- sessions -----------------------------------------------------------------
    async def create_session(self, session_id: str, app: str, timeout_s: int) -> None:
        async with self._lock, self.engine.begin() as conn:
            await conn.execute(
                sessions.insert().values(
                    id=session_id, app=app, status="active", timeout_s=timeout_s, created_at=utcnow()
                )
            )

    async def get_session(self, session_id: str) -> SessionRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(sessions).where(sessions.c.id == session_id))).first()
        return SessionRecord.from_row(row) if row else None

    async def session_owner(self, session_id: str) -> str | None:
        """The key that opened a session: its first task's key."""
        query = sa.select(tasks.c.api_key_id).where(tasks.c.session_id == session_id).order_by(tasks.c.id).limit(1)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else row[0]

    async def own_session(self, session_id: str, worker_id: str, lease_s: float) -> str | None:
        """Bind an unowned session to ``worker_id`` (leased for ``lease_s``, renewed by
        :meth:`renew_sessions`); returns its owner (maybe another worker)."""
        async with self._lock, self.engine.begin() as conn:
            await conn.execute(
                sa.update(sessions)
                .where(sessions.c.id == session_id, sessions.c.worker_id.is_(None))
                .values(worker_id=worker_id, lease_until=time.time() + lease_s)
            )
            row = (await conn.execute(sa.select(sessions.c.worker_id).where(sessions.c.id == session_id))).first()
        return None if row is None else row[0]

    async def renew_sessions(self, worker_id: str, lease_s: float) -> None:
        """Extend the lease of every active session ``worker_id`` holds (it is alive)."""
        async with self._lock, self.engine.begin() as conn:
            await conn.execute(
                sa.update(sessions)
                .where(sessions.c.worker_id == worker_id, sessions.c.status == "active")
                .values(lease_until=time.time() + lease_s)
            )

    async def touch_session(self, session_id: str, expires_at: float) -> None:
        async with self._lock, self.engine.begin() as conn:
            await conn.execute(
                sa.update(sessions)
                .where(sessions.c.id == session_id, sessions.c.status == "active")
                .values(expires_at=expires_at)
            )

    async def end_session(self, session_id: str, status: str) -> bool:
        async with self._lock, self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(sessions)
                .where(sessions.c.id == session_id, sessions.c.status == "active")
                .values(status=status)
            )
        return result.rowcount == 1

    async def sessions_of(self, worker_id: str) -> list[SessionRecord]:
        query = sa.select(sessions).where(sessions.c.worker_id == worker_id)
        async with self.engine.connect() as conn:
            return [SessionRecord.from_row(r) for r in await conn.execute(query)]


def _event(task_id: str, kind: str, data: dict[str, Any]) -> Any:
    return task_events.insert().values(task_id=task_id, type=kind, data=data, created_at=utcnow())


def _status_event(status: str, error: dict[str, Any] | None) -> dict[str, Any]:
    return {"status": status, "error": error} if error else {"status": status}


def _held(task_id: str, worker_id: str, attempt: int | None) -> sa.ColumnElement[bool]:
    """The task as this worker's claim holds it: processing, its worker, its attempt (if given)."""
    held = sa.and_(tasks.c.id == task_id, tasks.c.worker_id == worker_id, tasks.c.status == "processing")
    return held if attempt is None else sa.and_(held, tasks.c.attempts == attempt)
