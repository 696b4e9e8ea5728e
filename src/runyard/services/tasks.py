"""Tasks: create (validate, resolve, enqueue), read, list, cancel, wait, stream; sessions; the sweeper.

Status: ``queued → processing → completed | failed | cancelled``. The store is the source
of truth; an in-process bus only wakes waiters early. Subscribers in another process than
the worker fall back to polling the store every ``poll_interval`` (at most 0.25 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from pydantic import ValidationError as PydanticValidationError

from ..apps import AppDefinition
from ..backends.queue import TERMINAL, SQLTaskQueue
from ..backends.records import TaskRecord
from ..backends.store import new_id, utcnow
from ..config import RunyardConfig
from ..errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    SessionExpiredError,
    SessionNotFoundError,
    ValidationError,
)
from ..telemetry import spans
from ..telemetry.tracing import Span
from .apps import AppRegistry
from .urlguard import check_url
from .webhooks import WebhookSender

log = logging.getLogger("runyard.tasks")

DEFAULT_POOL = "shared"
DEFAULT_SESSION_TIMEOUT_S = 300


class TaskBus:
    """In-process wake-ups: task changes, new work per pool, cancel and session-end signals."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self.pool_signals: dict[str, asyncio.Event] = {}
        self.cancel_hooks: dict[str, Callable[[], None]] = {}
        self.session_hooks: list[Callable[[str], None]] = []

    def notify(self, task_id: str) -> None:
        for event in self._watchers.get(task_id, ()):
            event.set()

    @contextlib.contextmanager
    def watch(self, task_id: str) -> Any:
        event = asyncio.Event()
        self._watchers.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            watchers = self._watchers.get(task_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[task_id]

    def pool_signal(self, pool: str) -> asyncio.Event:
        return self.pool_signals.setdefault(pool, asyncio.Event())


class RefResolver(Protocol):
    """What a ref that names no app names (``acme/x@main`` may be a workflow)."""

    async def task_for(
        self, ref: str, input: dict[str, Any], *, api_key_id: str | None
    ) -> tuple[str, dict[str, Any]] | None:
        """The (app ref, input) of the task that runs ``ref``, or ``None`` when it names nothing here."""
        ...


class TaskRunner(Protocol):
    """Create a task and wait for it: what agents' app tools and workflows' app blocks need."""

    async def create(
        self,
        app: str,
        input: dict[str, Any],
        *,
        setup: dict[str, Any] | None = None,
        webhook: str | None = None,
        pool: str | None = None,
        api_key_id: str | None = None,
    ) -> dict[str, Any]: ...

    async def wait(self, task_id: str, timeout: float) -> dict[str, Any]: ...


class InputFiles(Protocol):
    """Gives file inputs a stored ref (see :meth:`FileService.localize`)."""

    async def localize(self, value: Any) -> Any: ...


class TaskService:
    def __init__(
        self,
        config: RunyardConfig,
        queue: SQLTaskQueue,
        apps: AppRegistry,
        webhooks: WebhookSender,
        *,
        files: InputFiles | None = None,
        refs: RefResolver | None = None,
        bus: TaskBus | None = None,
    ) -> None:
        """``refs``: asked about refs that name no app (workflows run as tasks of another app);
        ``bus``: the wake-ups shared by gateways and workers (:class:`runyard.backends.redis_bus.
        RedisTaskBus`, a TaskBus that also publishes), default one in this process."""
        self.config = config
        self.queue = queue
        self.apps = apps
        self.bus: TaskBus = bus if bus is not None else TaskBus()
        self.webhooks = webhooks
        self.files = files
        self.refs = refs
        self.poll_s = min(0.25, config.workers.poll_interval_s)
        self._sweeper: asyncio.Task[None] | None = None
        self._stop_sweeping = asyncio.Event()

    def pools(self) -> dict[str, int]:
        """Pool name -> concurrency (``shared`` always exists)."""
        out = {DEFAULT_POOL: self.config.workers.concurrency}
        out.update({name: p.concurrency for name, p in self.config.pools.items()})
        return out

    async def start(self) -> None:
        self._stop_sweeping.clear()
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def aclose(self) -> None:
        if self._sweeper is not None:
            # stopped between sweeps, never cancelled mid-UPDATE (SQLite would keep its write lock)
            self._stop_sweeping.set()
            await self._sweeper
            self._sweeper = None
        await self.webhooks.aclose()

    # -- create -------------------------------------------------------------------
    async def create(
        self,
        app: str,
        input: dict[str, Any],
        *,
        setup: dict[str, Any] | None = None,
        session: str | None = None,
        session_timeout: int | None = None,
        webhook: str | None = None,
        pool: str | None = None,
        api_key_id: str | None = None,
    ) -> dict[str, Any]:
        try:
            definition = self.apps.resolve(app)
        except NotFoundError as err:  # not an app: maybe a workflow (runs as a runyard/workflow task)
            found = None
            if err.code == "app_not_found" and self.refs is not None:
                found = await self.refs.task_for(app, input, api_key_id=api_key_id)
            if found is None:
                raise
            return await self.create(found[0], found[1], webhook=webhook, api_key_id=api_key_id)
        self.apps.check_requirements(definition)
        input = await self._prepare_input(definition, input)
        pool = pool or definition.pool or DEFAULT_POOL
        if pool not in self.pools():
            raise InvalidRequestError(f"unknown pool {pool!r} (known: {', '.join(self.pools())})", code="unknown_pool")
        if webhook is not None:
            await check_url(webhook, allow_private=self.config.webhooks.allow_private_webhooks, field="webhook")
        session_id, affinity = await self._session_for(definition, session, session_timeout)
        with spans.task_submit(definition.name) as span:
            return await self._enqueue(definition, input, pool, setup, session_id, affinity, webhook, api_key_id, span)

    async def _enqueue(
        self,
        definition: AppDefinition,
        input: dict[str, Any],
        pool: str,
        setup: dict[str, Any] | None,
        session_id: str | None,
        affinity: str | None,
        webhook: str | None,
        api_key_id: str | None,
        span: Span,
    ) -> dict[str, Any]:
        """Store the task (with the submit span's trace context, for the worker) and wake a worker."""
        task = TaskRecord(
            id=str(new_id()),
            app=definition.name,
            version=definition.version,
            status="queued",
            pool=pool,
            input=input,
            setup=setup or None,
            session_id=session_id,
            webhook=webhook,
            max_attempts=self.config.workers.max_attempts,
            affinity=affinity,
            api_key_id=api_key_id,
            created_at=utcnow(),
            trace=spans.task_carrier() or None,
        )
        span.set_many(
            {"runyard.task.id": task.id, "runyard.task.version": definition.version, "runyard.task.pool": pool}
        )
        await self.queue.enqueue(task)
        self.bus.pool_signal(pool).set()
        return self.render(task, [])

    async def _session_for(
        self, definition: AppDefinition, session: str | None, timeout: int | None
    ) -> tuple[str | None, str | None]:
        if timeout is not None and not 1 <= timeout <= 3600:
            raise ValidationError(
                "session_timeout must be between 1 and 3600 seconds",
                code="validation_error",
                details=[{"field": "session_timeout", "message": "must be between 1 and 3600"}],
            )
        if session is None:
            return None, None
        if not definition.is_class:
            raise InvalidRequestError(
                f"{definition.ref} is a function app; sessions need a class app", code="no_sessions"
            )
        if session == "new":
            session_id = str(uuid.uuid4())
            await self.queue.create_session(session_id, definition.ref, timeout or DEFAULT_SESSION_TIMEOUT_S)
            return session_id, None
        found = await self.queue.get_session(session)
        if found is None or found.status == "ended":
            raise SessionNotFoundError(f"session {session} not found")
        now = time.time()
        lapsed = [found.expires_at, found.lease_until]  # idle too long; its worker gone
        if found.status != "active" or any(t is not None and t < now for t in lapsed):
            raise SessionExpiredError(f"session {session} expired")
        if found.app.partition("@")[0] != definition.name:
            raise InvalidRequestError(f"session {session} belongs to {found.app}", code="session_app_mismatch")
        return session, found.worker_id

    async def _prepare_input(self, definition: AppDefinition, input: dict[str, Any]) -> dict[str, Any]:
        """Validate against the app's schema (422 listing fields); file refs must exist (404),
        inline ``data:`` files are stored and replaced by their ``runyard://`` ref."""
        try:
            value = definition.validate_input(input)
        except PydanticValidationError as err:
            raise input_error(err) from None
        if self.files is None:
            return input
        await self.files.localize(value)
        dumped: dict[str, Any] = definition.adapter("input").dump_python(value, mode="json")
        return dumped

    # -- read -----------------------------------------------------------------------
    async def get(self, task_id: str) -> dict[str, Any]:
        task = await self.queue.get(task_id)
        if task is None:
            raise NotFoundError(f"task {task_id} not found", code="task_not_found")
        logs = await self.queue.events(task_id, types=("log",))
        return self.render(task, [(e.data or {})["message"] for e in logs])

    async def list_tasks(
        self,
        *,
        app: str | None = None,
        status: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        workspace: str | None = None,
    ) -> dict[str, Any]:
        """A page of tasks, newest first; ``workspace``: only that workspace's keys' tasks."""
        name, _, version = (app or "").partition("@")
        rows = await self.queue.list_tasks(
            app=name or None,
            version=version or None,
            status=status,
            limit=limit + 1,
            cursor=cursor,
            workspace=workspace,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "data": [self.render(r, None) for r in rows],
            "next_cursor": rows[-1].id if more and rows else None,
            "has_more": more,
        }

    @staticmethod
    def render(task: TaskRecord, logs: list[str] | None) -> dict[str, Any]:
        """The public task (never its ``setup``)."""
        started, finished = task.started_at, task.finished_at
        out: dict[str, Any] = {
            "id": task.id,
            "object": "task",
            "app": task.ref,
            "status": task.status,
            "pool": task.pool,
            "input": task.input,
            "output": task.output,
            "error": task.error,
            "progress": task.progress,
            "session_id": task.session_id,
            "attempts": task.attempts,
            "cancel_requested": bool(task.cancel_requested),
            "webhook": task.webhook,
            "created_at": _iso(task.created_at),
            "started_at": _iso(started),
            "finished_at": _iso(finished),
            "duration_ms": round((finished - started).total_seconds() * 1000, 3) if started and finished else None,
        }
        if logs is not None:
            out["logs"] = logs
        return out

    # -- cancel / wait / stream -------------------------------------------------------
    async def cancel(self, task_id: str) -> dict[str, Any]:
        status, cancelled_now = await self.queue.request_cancel(task_id)
        if status is None:
            raise NotFoundError(f"task {task_id} not found", code="task_not_found")
        if status in TERMINAL and status != "cancelled":
            raise ConflictError(f"task {task_id} already {status}", code="task_finished")
        hook = self.bus.cancel_hooks.get(task_id)
        if hook is not None:
            hook()
        if cancelled_now:  # a repeat (or the worker, for a running task) does not send it again
            await self.finished(task_id)
        return await self.get(task_id)

    async def wait(self, task_id: str, timeout: float) -> dict[str, Any]:
        """The task once terminal, or as it is after ``timeout`` seconds (long-poll)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self.bus.watch(task_id) as changed:
            while True:
                changed.clear()
                status = await self.queue.status_of(task_id)
                if status is None:
                    raise NotFoundError(f"task {task_id} not found", code="task_not_found")
                remaining = deadline - time.monotonic()
                if status in TERMINAL or remaining <= 0:
                    return await self.get(task_id)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(remaining, self.poll_s))

    async def events(self, task_id: str) -> AsyncIterator[dict[str, Any]]:
        """Status, log and progress events in order, ending after a terminal status
        (whose event carries the final ``task``)."""
        if await self.queue.status_of(task_id) is None:
            raise NotFoundError(f"task {task_id} not found", code="task_not_found")
        return self._events(task_id)

    async def _events(self, task_id: str) -> AsyncIterator[dict[str, Any]]:
        seq = 0
        with self.bus.watch(task_id) as changed:
            while True:
                changed.clear()
                for event in await self.queue.events(task_id, after=seq):
                    seq = event.seq
                    out = {"type": event.type, "seq": seq, "task_id": task_id, **(event.data or {})}
                    out["created_at"] = _iso(event.created_at)
                    if event.type == "status" and out.get("status") in TERMINAL:
                        out["task"] = await self.get(task_id)
                        yield out
                        return
                    yield out
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), self.poll_s)

    async def finished(self, task_id: str) -> None:
        """A task became terminal here: wake waiters and send its webhook."""
        self.bus.notify(task_id)
        task = await self.queue.get(task_id)
        if task is not None and task.webhook:
            self.webhooks.send(task.webhook, await self.get(task_id))

    # -- sessions -------------------------------------------------------------------------
    async def end_session(self, session_id: str) -> dict[str, Any]:
        found = await self.queue.get_session(session_id)
        if found is None or found.status == "ended":
            raise SessionNotFoundError(f"session {session_id} not found")
        await self.queue.end_session(session_id, "ended")
        for hook in list(self.bus.session_hooks):
            hook(session_id)
        return {"id": session_id, "object": "session", "deleted": True}

    # -- sweeper --------------------------------------------------------------------------
    async def sweep(self) -> list[str]:
        finalized = await self.queue.requeue_expired()
        for task_id in finalized:
            await self.finished(task_id)
        return finalized

    async def _sweep_forever(self) -> None:
        interval = min(self.config.workers.lease_s / 2, 5.0)
        while not self._stop_sweeping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop_sweeping.wait(), timeout=interval)
            if self._stop_sweeping.is_set():
                return
            try:
                await self.sweep()
            except Exception:
                log.exception("task sweep failed")


def input_error(err: PydanticValidationError) -> ValidationError:
    problems = [
        {"field": ".".join(["input", *(str(p) for p in e["loc"])]), "message": e["msg"], "type": e["type"]}
        for e in err.errors()
    ]
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return ValidationError(f"invalid input: {summary}", code="invalid_input", details=problems)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
