"""The task bus across processes: :class:`runyard.services.tasks.TaskBus`'s methods over Redis pub/sub.

Every wake-up is delivered in this process directly and published on ``<prefix>bus`` for the
other gateways and workers: a task's change (``notify``), new work in a pool (``pool_signal(p)
.set()``), a cancel (``cancel_hooks.get(task_id)()`` reaches the replica running the task) and a
session's end (``session_hooks``). Wake-ups only cut latency: waiters and workers still poll the
store, so a message lost while Redis reconnects delays, never loses, anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ..services.tasks import TaskBus
from .redis_conn import RedisHandle

log = logging.getLogger("runyard.bus")


class SharedEvent(asyncio.Event):
    """An event whose ``set`` also wakes the other processes' event of the same name."""

    def __init__(self, publish: Callable[[], None]) -> None:
        super().__init__()
        self._publish = publish

    def set(self) -> None:
        super().set()
        self._publish()

    def set_here(self) -> None:
        super().set()


class _CancelHooks(dict[str, Callable[[], None]]):
    """``get(task_id)`` is the local hook when the task runs here, else one that publishes the cancel."""

    def __init__(self, publish: Callable[[str], None]) -> None:
        super().__init__()
        self._publish = publish

    def get(self, task_id: str, default: Any = None) -> Any:
        hook = super().get(task_id)
        return hook if hook is not None else (lambda: self._publish(task_id))


class RedisTaskBus(TaskBus):
    """``TaskBus`` (its watchers, here) that also publishes, plus ``start``/``aclose``."""

    def __init__(self, redis: RedisHandle) -> None:
        super().__init__()
        self.redis = redis
        self.channel = redis.key("bus")
        self.origin = uuid.uuid4().hex
        self.cancel_hooks: dict[str, Callable[[], None]] = _CancelHooks(lambda t: self._publish("cancel", t))
        self.session_hooks: list[Callable[[str], None]] = [self._session_ended_here]
        self._sending: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    # -- TaskBus ---------------------------------------------------------------------
    def notify(self, task_id: str) -> None:
        super().notify(task_id)
        self._publish("task", task_id)

    def pool_signal(self, pool: str) -> asyncio.Event:
        event = self.pool_signals.get(pool)
        if event is None:
            event = self.pool_signals[pool] = SharedEvent(lambda: self._publish("pool", pool))
        return event

    # -- lifecycle -------------------------------------------------------------------
    async def start(self, timeout_s: float = 5.0) -> None:
        """Subscribe (returns once subscribed, so no wake-up published after it is missed). With
        Redis down it returns after ``timeout_s`` and keeps trying: waiters poll the store meanwhile
        (``/readyz`` says Redis is down)."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="runyard-bus")
            try:
                await asyncio.wait_for(self._subscribed.wait(), timeout_s)
            except TimeoutError:
                log.warning("task bus not subscribed yet (Redis unreachable); wake-ups wait for it")

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    # -- plumbing --------------------------------------------------------------------
    def _session_ended_here(self, session_id: str) -> None:
        self._publish("session", session_id)

    def _publish(self, kind: str, value: str) -> None:
        message = orjson.dumps({"o": self.origin, "k": kind, "v": value})
        task = asyncio.get_running_loop().create_task(self._send(message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, message: bytes) -> None:
        try:
            await self.redis.client.publish(self.channel, message)
        except Exception:
            log.warning("could not publish a task wake-up (others will see it when they poll)", exc_info=True)

    def _deliver(self, kind: str, value: str) -> None:
        if kind == "task":
            TaskBus.notify(self, value)  # here only: it came from the bus
        elif kind == "pool":
            event = self.pool_signal(value)
            assert isinstance(event, SharedEvent)
            event.set_here()
        elif kind == "cancel":
            cancel = dict.get(self.cancel_hooks, value)
            if cancel is not None:
                cancel()
        elif kind == "session":
            for ended in list(self.session_hooks):
                if ended != self._session_ended_here:
                    ended(value)

    async def _listen(self) -> None:
        while True:
            pubsub = self.redis.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    data = orjson.loads(message["data"])
                    if data["o"] != self.origin:
                        self._deliver(data["k"], data["v"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("task bus subscription lost; resubscribing", exc_info=True)
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
