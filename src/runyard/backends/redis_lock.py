"""Named locks with a lease, for state several replicas change (an agent chat's turns).

:class:`Locks` is the small protocol: ``async with locks.hold(name): ...``. :class:`LocalLocks`
is one process's asyncio locks; :class:`RedisLocks` a ``SET NX PX`` lease renewed while held and
released only by its holder, so a crashed holder frees the name after ``lease_s``.
:func:`keep_lease` and :func:`let_go` are that lease's upkeep, shared with the idempotency keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from .redis_conn import RedisHandle

log = logging.getLogger("runyard.redis")

# Delete the lock only if we still hold it. KEYS: lock. ARGV: our token.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Extend the lock only if we still hold it. KEYS: lock. ARGV: token, lease_ms.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
RETRY_S = 0.2  # between tries of a renewal that failed


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
        renewing = asyncio.create_task(keep_lease(self._renew, key, token, self._lease_ms))
        try:
            yield
        finally:
            await let_go(renewing, self._release, key, token)


async def keep_lease(renew: Any, key: str, token: str, lease_ms: int) -> None:
    """Renew a held lease every third of it; a renewal that fails (Redis out of reach a while) is
    tried again every :data:`RETRY_S` until the lease would have run out. Raises :class:`LockLost`
    when it has: another holder may have it now (logged, as the holder goes on)."""
    lease_s = lease_ms / 1000
    renewed = time.monotonic()
    while True:
        await asyncio.sleep(lease_s / 3)
        while True:
            sent = time.monotonic()
            try:
                held = await renew(keys=[key], args=[token, lease_ms])
                break
            except Exception as err:
                if time.monotonic() + RETRY_S >= renewed + lease_s:
                    log.error("lost the lease on %s: no renewal reached Redis in %.1f s (%s)", key, lease_s, err)
                    raise LockLost(f"lease on {key} ran out while held") from err
                await asyncio.sleep(RETRY_S)
        if not held:
            log.error("lost the lease on %s: it ran out while held", key)
            raise LockLost(f"lease on {key} ran out while held")
        renewed = sent


async def let_go(renewing: asyncio.Task[None], release: Any, key: str, token: str) -> None:
    """Stop renewing and release the lease; a release Redis does not take is logged (the lease then
    runs out by itself), never raised over the holder's own outcome."""
    renewing.cancel()
    with contextlib.suppress(asyncio.CancelledError, LockLost):
        await renewing
    try:
        await asyncio.shield(release(keys=[key], args=[token]))
    except Exception as err:
        log.warning("could not release the lease on %s (it runs out by itself): %s", key, err)
