"""Idempotency keys: a retried request gets the first one's answer instead of running twice."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ..errors import ConflictError

Answer = tuple[int, bytes]  # HTTP status, JSON body


class Idempotency(Protocol):
    """Runs ``produce`` once per key: :class:`IdempotencyCache` in one process,
    :class:`runyard.backends.redis_idempotency.RedisIdempotency` across replicas."""

    async def run(self, key: str, fingerprint: bytes, produce: Callable[[], Awaitable[Answer]]) -> Answer: ...


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    answer: asyncio.Future[Answer]
    expires: float


class IdempotencyCache:
    """In-process: ``run`` executes ``produce`` once per key within the TTL.

    A repeat while the first is running waits for it; a repeat with a different body is a
    409. Only successful answers are kept: after a failure the key may be used again.
    """

    def __init__(self, ttl_s: float, max_entries: int = 50_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    async def run(self, key: str, fingerprint: bytes, produce: Callable[[], Awaitable[Answer]]) -> Answer:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry.expires < now:
            del self._entries[key]
            entry = None
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise ConflictError(
                    "this Idempotency-Key was already used with a different request body",
                    code="idempotency_key_reused",
                )
            return await asyncio.shield(entry.answer)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._entries[key] = _Entry(fingerprint, future, now + self._ttl)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        try:
            answer = await produce()
        except BaseException as err:
            self._entries.pop(key, None)
            if not future.done():
                future.set_exception(err)
                future.exception()  # mark retrieved: waiters may not exist
            raise
        future.set_result(answer)
        if answer[0] >= 300:
            self._entries.pop(key, None)
        return answer
