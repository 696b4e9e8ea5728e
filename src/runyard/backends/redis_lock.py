"""Named locks with a lease, for state several replicas change (an agent chat's turns).

:class:`Locks` is the small protocol: ``async with locks.hold(name): ...``. :class:`LocalLocks`
is one process's asyncio locks; :class:`RedisLocks` a ``SET NX PX`` lease renewed while held and
released only by its holder, so a crashed holder frees the name after ``lease_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Protocol

from .redis_conn import RedisHandle
from .redis_idempotency import RELEASE, RENEW


class Locks(Protocol):
    def hold(self, name: str) -> contextlib.AbstractAsyncContextManager[None]: ...


class LocalLocks:
    """One ``asyncio.Lock`` per name (the embedded default; one process only)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            yield


class LockLost(RuntimeError):
    """The lease ran out while held (the holder stalled longer than ``lease_s``)."""


class RedisLocks:
    """Leased locks on Redis, exclusive across replicas."""

    def __init__(self, redis: RedisHandle, *, lease_s: float = 30.0, poll_s: float = 0.02) -> None:
        self.redis = redis
        self._lease_ms = max(100, int(lease_s * 1000))
        self._poll_s = poll_s
        self._release = redis.client.register_script(RELEASE)
        self._renew = redis.client.register_script(RENEW)

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        key, token = self.redis.key("lock", name), uuid.uuid4().hex
        delay = self._poll_s
        while not await self.redis.client.set(key, token, nx=True, px=self._lease_ms):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
        renewing = asyncio.create_task(self._keep(key, token))
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, LockLost):
                await renewing
            await asyncio.shield(self._release(keys=[key], args=[token]))

    async def _keep(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            if not await self._renew(keys=[key], args=[token, self._lease_ms]):
                raise LockLost(f"lock {key} expired while held")
