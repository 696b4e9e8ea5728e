"""Workers: claim tasks from the queue and run apps, in the server's process or on their own.

One dispatcher per pool claims while a slot (``concurrency``) is free. A running task is
heartbeated every ``lease_s / 3``; the heartbeat also carries cancel requests from other
processes (in-process cancels arrive at once through the bus). Sync apps run in a thread
pool sized to the total concurrency. Class-app instances are cached per (app, setup) and,
for sessions, kept per session id **in this process**: a session lives and dies with the
worker that created it. Runs for a session go back to the queue pinned to that worker, from
whichever gateway they came; the worker renews the leases of its sessions, and once a dead
worker's lapse the sweeper ends them (their runs fail ``SESSION_EXPIRED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import inspect
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from pydantic import ValidationError as PydanticValidationError

from .apps import AppContext, AppDefinition, TaskCancelled, is_model
from .backends.queue import SQLTaskQueue
from .backends.records import TaskRecord
from .config import WorkersConfig
from .errors import RunyardError
from .services.ai import AIService, BoundAI, CallContext
from .services.apps import AppRegistry
from .services.files import FileService
from .services.tasks import TaskService
from .telemetry import spans

log = logging.getLogger("runyard.worker")
STOP_WAIT_S = 5.0  # how long a stopping worker lets its dispatchers finish a claim


@dataclass
class _Session:
    instance: Any
    timeout_s: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Worker:
    def __init__(
        self,
        tasks: TaskService,
        queue: SQLTaskQueue,
        apps: AppRegistry,
        ai: AIService,
        files: FileService,
        config: WorkersConfig,
        *,
        pools: list[str] | None = None,
        worker_id: str | None = None,
    ) -> None:
        """``pools``: the pools to serve (default: all of ``tasks.pools()``)."""
        self.tasks = tasks
        self.queue = queue
        self.apps = apps
        self.ai = ai
        self.files = files
        self.config = config
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        all_pools = self.tasks.pools()
        unknown = [p for p in pools or [] if p not in all_pools]
        if unknown:
            raise ValueError(f"unknown pools: {', '.join(unknown)} (known: {', '.join(all_pools)})")
        self.pools = {p: all_pools[p] for p in pools} if pools else all_pools
        self._threads = ThreadPoolExecutor(max_workers=sum(self.pools.values()), thread_name_prefix="runyard-app")
        self._loops: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._instances: dict[str, Any] = {}
        self._instance_locks: dict[str, asyncio.Lock] = {}
        self._sessions: dict[str, _Session] = {}
        self._stopping = False

    async def start(self) -> None:
        for pool, concurrency in self.pools.items():
            self._loops.append(asyncio.create_task(self._dispatch(pool, concurrency)))
        self._loops.append(asyncio.create_task(self._reap_sessions()))
        self.tasks.bus.session_hooks.append(self._drop_session)
        log.info("worker %s serving pools %s", self.worker_id, self.pools)

    async def aclose(self) -> None:
        """Stop claiming, hand running tasks back to the queue, end this worker's sessions.

        Dispatchers are woken and left to finish the claim they may be in (a claim cancelled
        mid-transaction could keep SQLite's write lock until the connection is collected)."""
        self._stopping = True
        for pool in self.pools:
            self.tasks.bus.pool_signal(pool).set()
        for job in list(self._running):  # their slots free up, so no dispatcher stays blocked on one
            job.cancel(msg="shutdown")
        dispatchers = self._loops[: len(self.pools)]
        if dispatchers:
            await asyncio.wait(dispatchers, timeout=STOP_WAIT_S)
        for loop in self._loops:
            loop.cancel()
        for job in list(self._running):  # one claimed meanwhile
            job.cancel(msg="shutdown")
        await asyncio.gather(*self._loops, *self._running, return_exceptions=True)
        with contextlib.suppress(ValueError):
            self.tasks.bus.session_hooks.remove(self._drop_session)
        for session_id in list(self._sessions):
            await self.queue.end_session(session_id, "expired")
        self._sessions.clear()
        self._threads.shutdown(wait=False, cancel_futures=True)

    # -- dispatch -----------------------------------------------------------------
    async def _dispatch(self, pool: str, concurrency: int) -> None:
        slots = asyncio.Semaphore(concurrency)
        signal = self.tasks.bus.pool_signal(pool)
        while not self._stopping:
            await slots.acquire()
            if self._stopping:
                slots.release()
                return
            try:
                signal.clear()
                task = await self.queue.claim(pool, self.worker_id, self.config.lease_s)
            except Exception:
                log.exception("claim failed")
                task = None
            if task is None:
                slots.release()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(signal.wait(), self.config.poll_interval_s)
                continue
            self.tasks.bus.notify(task.id)
            job = asyncio.create_task(self._execute(task))
            self._running.add(job)
            job.add_done_callback(self._running.discard)
            job.add_done_callback(lambda _: slots.release())

    # -- one task -----------------------------------------------------------------
    async def _execute(self, task: TaskRecord) -> None:
        task_id = task.id
        try:
            with spans.task_run(task.app, task_id, task.trace, task.created_at if task.attempts <= 1 else None) as span:
                span.set_many({"runyard.task.attempt": task.attempts, "runyard.worker.id": self.worker_id})
                status, output, error = await self._run(task)
                spans.task_outcome(span, status, error)
        except asyncio.CancelledError:
            if self._stopping:
                await asyncio.shield(self.queue.release(task_id, self.worker_id, None, attempt=task.attempts))
                self.tasks.bus.notify(task_id)
            raise
        except _Released:
            return
        except _LeaseLost:
            log.warning("task %s: lease lost; another worker owns it now", task_id)
            return
        finish = self.queue.finish(task_id, self.worker_id, status, attempt=task.attempts, output=output, error=error)
        if await finish:
            await self.tasks.finished(task_id)

    async def _run(self, task: TaskRecord) -> tuple[str, Any, dict[str, Any] | None]:
        task_id, ref = task.id, task.ref
        try:
            definition = self.apps.resolve(ref)
            secrets = self.apps.check_requirements(definition)
        except RunyardError as err:
            return "failed", None, {"code": err.code, "message": err.message}
        session: _Session | None = None
        if task.session_id:
            session, failure = await self._session(task, definition)
            if failure is not None:
                return "failed", None, failure
        events: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def emit(kind: str, data: dict[str, Any]) -> None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                events.put_nowait((kind, data))
            else:
                loop.call_soon_threadsafe(events.put_nowait, (kind, data))

        ctx = AppContext(
            task_id=task_id,
            app=ref,
            attempt=task.attempts,
            session_id=task.session_id,
            secrets=secrets,
            emit=emit,
            ai=BoundAI(self.ai, CallContext(api_key_id=task.api_key_id, tags={"task_id": task_id})),
        )
        writer = asyncio.create_task(self._write_events(task_id, events))
        app_task = asyncio.create_task(self._call(definition, task, ctx, session))
        hook = self.tasks.bus.cancel_hooks[task_id] = lambda: self._on_cancel(ctx, app_task)
        beat = asyncio.create_task(self._heartbeat(task, ctx, app_task))
        try:
            output = await asyncio.shield(app_task)
            result: tuple[str, Any, dict[str, Any] | None] = ("completed", output, None)
        except (TaskCancelled, asyncio.CancelledError) as err:
            if isinstance(err, asyncio.CancelledError) and not app_task.cancelled():
                app_task.cancel()  # we are being cancelled (shutdown / lease lost): stop the app too
                raise
            if beat.done() and beat.exception() is None and beat.result() == "lost":
                raise _LeaseLost() from None
            result = ("cancelled", None, {"code": "cancelled", "message": "the task was cancelled"})
        except _Released:
            raise
        except RunyardError as err:
            result = ("failed", None, {"code": err.code, "message": err.message})
        except PydanticValidationError as err:
            result = ("failed", None, {"code": "invalid_output", "message": str(err)})
        except Exception as err:
            log.info("task %s (%s) failed: %r", task_id, ref, err)
            result = ("failed", None, {"code": "app_error", "message": f"{type(err).__name__}: {err}"})
        finally:
            if self.tasks.bus.cancel_hooks.get(task_id) is hook:  # not a later claim's of the same task
                del self.tasks.bus.cancel_hooks[task_id]
            beat.cancel()
            events.put_nowait(None)
            await asyncio.gather(beat, return_exceptions=True)
            await asyncio.shield(writer)
        if beat.done() and not beat.cancelled() and beat.exception() is None and beat.result() == "lost":
            raise _LeaseLost()
        if session is not None and task.session_id:
            await self.queue.touch_session(task.session_id, time.time() + session.timeout_s)
        return result

    async def _call(
        self, definition: AppDefinition, task: TaskRecord, ctx: AppContext, session: _Session | None
    ) -> Any:
        files = self.files
        value = definition.validate_input(task.input or {})
        await files.localize(value)  # File inputs get a local path
        if definition.is_class:
            if session is not None:
                async with session.lock:
                    output = await self._invoke(definition, session.instance.run, value, ctx)
            else:
                instance = await self._instance(definition, task.setup)
                output = await self._invoke(definition, instance.run, value, ctx)
        else:
            output = await self._invoke(definition, definition.target, value, ctx)
        await files.store_outputs(output, api_key_id=task.api_key_id)  # File outputs become refs
        return definition.dump_output(output)

    async def _invoke(self, definition: AppDefinition, fn: Any, value: Any, ctx: AppContext) -> Any:
        args, kwargs = definition.call_args(value, ctx)
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        context = contextvars.copy_context()  # the task's trace context, for the model calls a sync app makes
        return await asyncio.get_running_loop().run_in_executor(self._threads, lambda: context.run(fn, *args, **kwargs))

    async def _instance(self, definition: AppDefinition, setup: dict[str, Any] | None) -> Any:
        key = definition.ref + "|" + hashlib.sha256(orjson.dumps(setup or {}, option=orjson.OPT_SORT_KEYS)).hexdigest()
        if key in self._instances:
            return self._instances[key]
        async with self._instance_locks.setdefault(key, asyncio.Lock()):
            if key not in self._instances:
                self._instances[key] = await self._new_instance(definition, setup)
        return self._instances[key]

    async def _new_instance(self, definition: AppDefinition, setup: dict[str, Any] | None) -> Any:
        instance = definition.target()
        setup_fn = getattr(instance, "setup", None)
        if callable(setup_fn):
            config: Any = setup or {}
            if is_model(definition.setup_type):
                config = definition.setup_type.model_validate(config)
            if inspect.iscoroutinefunction(setup_fn):
                await setup_fn(config)
            else:
                await asyncio.get_running_loop().run_in_executor(self._threads, setup_fn, config)
        return instance

    # -- sessions -----------------------------------------------------------------
    async def _session(
        self, task: TaskRecord, definition: AppDefinition
    ) -> tuple[_Session | None, dict[str, Any] | None]:
        session_id = task.session_id
        assert session_id is not None  # only tasks of a session come here
        owner = await self.queue.own_session(session_id, self.worker_id, self.config.lease_s)
        if owner is not None and owner != self.worker_id:
            await self.queue.release(task.id, self.worker_id, owner, attempt=task.attempts)
            raise _Released()
        info = await self.queue.get_session(session_id)
        expired = {"code": "SESSION_EXPIRED", "message": f"session {session_id} expired"}
        if info is None or info.status != "active":
            self._sessions.pop(session_id, None)
            return None, expired
        if info.expires_at is not None and info.expires_at < time.time():
            self._sessions.pop(session_id, None)
            await self.queue.end_session(session_id, "expired")
            return None, expired
        session = self._sessions.get(session_id)
        if session is None:
            if info.expires_at is not None:  # it ran before, but not here (this worker restarted)
                return None, expired
            session = _Session(await self._new_instance(definition, task.setup), info.timeout_s)
            self._sessions[session_id] = session
        return session, None

    def _drop_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def _reap_sessions(self) -> None:
        """Renew the leases of the sessions held here (a dead worker's run out: the sweeper ends
        them) and drop the instances of sessions that ended or sat idle too long."""
        interval = min(self.config.session_sweep_s, self.config.lease_s / 3)
        while True:
            await asyncio.sleep(interval)
            if self._sessions:
                try:
                    await asyncio.shield(self.queue.renew_sessions(self.worker_id, self.config.lease_s))
                except Exception:
                    log.exception("session lease renewal failed")
            for session_id in list(self._sessions):
                try:
                    info = await self.queue.get_session(session_id)
                    stale = info is None or info.status != "active"
                    if not stale and info is not None and info.expires_at is not None:
                        stale = info.expires_at < time.time()
                        if stale:
                            await asyncio.shield(self.queue.end_session(session_id, "expired"))
                    if stale:
                        self._sessions.pop(session_id, None)
                except Exception:
                    log.exception("session sweep failed")

    # -- liveness & cancel ----------------------------------------------------------
    async def _heartbeat(self, task: TaskRecord, ctx: AppContext, app_task: asyncio.Task[Any]) -> str:
        task_id, attempt, interval = task.id, task.attempts, self.config.lease_s / 3
        while not app_task.done():
            await asyncio.sleep(interval)
            try:
                # shielded: a cancel (shutdown) must not cut the UPDATE off mid-transaction
                beat = self.queue.heartbeat(task_id, self.worker_id, self.config.lease_s, attempt=attempt)
                state = await asyncio.shield(beat)
            except Exception:
                log.exception("heartbeat failed for %s", task_id)
                continue
            if state is None:
                app_task.cancel()
                return "lost"
            if state and not ctx.cancelled:
                self._on_cancel(ctx, app_task)
        return "done"

    def _on_cancel(self, ctx: AppContext, app_task: asyncio.Task[Any]) -> None:
        ctx._set_cancelled()

        def force() -> None:
            if not app_task.done():
                app_task.cancel()

        asyncio.get_running_loop().call_later(self.config.cancel_grace_s, force)

    async def _write_events(self, task_id: str, events: asyncio.Queue[tuple[str, dict[str, Any]] | None]) -> None:
        """Persist log/progress events in order, batching what piled up meanwhile."""
        done = False
        while not done:
            item = await events.get()
            batch = []
            while item is not None:
                batch.append(item)
                if events.empty():
                    break
                item = events.get_nowait()
            done = item is None
            try:
                await self.queue.add_events(task_id, batch)
            except Exception:
                log.exception("could not store events of task %s", task_id)
            self.tasks.bus.notify(task_id)


class _Released(Exception):
    """The task went back to the queue for the worker that owns its session."""


class _LeaseLost(Exception):
    """Another worker re-claimed the task after this one's lease ran out."""


class WorkerHost(Protocol):
    """What a standalone worker runs inside: the gateway's services, started and closed together."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def new_worker(self, pools: list[str] | None = None) -> Worker: ...


async def run_worker(gateway: WorkerHost, pools: list[str] | None = None) -> None:
    """Run a standalone worker until SIGTERM/SIGINT (``runyard worker``); running tasks go back to the queue."""
    import signal

    await gateway.start()
    worker = gateway.new_worker(pools)
    await worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await worker.aclose()
        await gateway.aclose()
