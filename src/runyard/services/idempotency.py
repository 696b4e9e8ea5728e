"""Idempotency keys: a retried request gets the first one's answer instead of running twice."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .._json import kept
from ..errors import ConflictError

Answer = tuple[int, bytes]  # HTTP status, JSON body
_ENTRY_OVERHEAD = 700  # bytes an entry takes besides its body (key, entry, future), measured


class Idempotency(Protocol):
    """Runs ``produce`` once per key: :class:`IdempotencyCache` in one process,
    :class:`runyard.backends.redis_idempotency.RedisIdempotency` across replicas."""

    async def run(self, key: str, fingerprint: bytes, produce: Callable[[], Awaitable[Answer]]) -> Answer: ...


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    answer: asyncio.Future[Answer]
    expires: float
    size: int = 0  # the bytes it takes, once its answer is kept


class IdempotencyCache:
    """In-process: ``run`` executes ``produce`` once per key within the TTL.

    A repeat while the first is running waits for it; a repeat with a different body is a
    409. Only successful answers are kept: after a failure the key may be used again.
    """

    def __init__(self, ttl_s: float, max_bytes: int = 32 * 1024 * 1024) -> None:
        """Keeps answers taking at most ``max_bytes``, entries' own overhead included (oldest go first)."""
        self._ttl = ttl_s
        self.max_bytes = max_bytes
        self._bytes = 0  # answer bodies kept
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    async def run(self, key: str, fingerprint: bytes, produce: Callable[[], Awaitable[Answer]]) -> Answer:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry.expires < now:
            self._drop(key, entry)
            entry = None
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise ConflictError(
                    "this Idempotency-Key was already used with a different request body",
                    code="idempotency_key_reused",
                )
            return await asyncio.shield(entry.answer)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        entry = self._entries[key] = _Entry(fingerprint, future, now + self._ttl)
        try:
            answer = await produce()
        except BaseException as err:
            self._drop(key, entry)
            if not future.done():
                future.set_exception(err)
                future.exception()  # mark retrieved: waiters may not exist
            raise
        if answer[0] >= 300:
            future.set_result(answer)
            self._drop(key, entry)
            return answer
        answer = (answer[0], kept(answer[1]))
        future.set_result(answer)
        if self._entries.get(key) is entry:
            entry.size = len(answer[1]) + _ENTRY_OVERHEAD
            self._bytes += entry.size
            while self._entries and self._bytes > self.max_bytes:
                self._bytes -= self._entries.popitem(last=False)[1].size
        return answer

    def _drop(self, key: str, entry: _Entry) -> None:
        if self._entries.get(key) is entry:
            del self._entries[key]
            self._bytes -= entry.size
