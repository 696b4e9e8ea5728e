"""Idempotency keys on Redis: the same key sent to two replicas at once runs once.

The first caller takes ``idem:lock:<key>`` (``SET NX PX``, renewed while it runs) and, on a
success, stores the answer at ``idem:done:<key>`` for the TTL; a caller that finds the lock
taken polls for the answer (or for the lock to go, when the first failed: it then tries to
take the lock itself). Looking for the answer and taking the lock are one script, so an answer
stored between the two is never missed. A different body under a key in use is a 409, as
in-process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import orjson

from ..errors import ConflictError
from ..services.idempotency import Answer
from .redis_conn import RedisHandle
from .redis_lock import RELEASE, RENEW, keep_lease, let_go

# The answer if there is one, else the lock if free, else who holds it. KEYS: done, lock.
# ARGV: our token, lease_ms. Returns {1, answer} | {2, ""} (taken) | {3, holder or ""}.
CLAIM = """
local done = redis.call('GET', KEYS[1])
if done then return {1, done} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, ''} end
return {3, redis.call('GET', KEYS[2]) or ''}
"""


class RedisIdempotency:
    """Same ``run`` as :class:`runyard.services.idempotency.IdempotencyCache`, across replicas."""

    def __init__(self, redis: RedisHandle, ttl_s: float, *, lease_s: float = 30.0, poll_s: float = 0.02) -> None:
        self.redis = redis
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._lease_ms = max(100, int(lease_s * 1000))
        self._poll_s = poll_s
        self._claim = redis.client.register_script(CLAIM)
        self._release = redis.client.register_script(RELEASE)
        self._renew = redis.client.register_script(RENEW)

    async def run(self, key: str, fingerprint: bytes, produce: Callable[[], Awaitable[Answer]]) -> Answer:
        done_key, lock_key = self.redis.key("idem", "done", key), self.redis.key("idem", "lock", key)
        ours = fingerprint.hex() + ":"
        token = ours + uuid.uuid4().hex  # the body's hash, then who holds it
        delay = self._poll_s
        while True:
            state, value = await self._claim(keys=[done_key, lock_key], args=[token, self._lease_ms])
            if state == 1:
                return _answer(value, fingerprint)
            if state == 2:
                return await self._produce(done_key, lock_key, token, fingerprint, produce)
            if value and not value.decode().startswith(ours):
                raise _reused()
            await asyncio.sleep(delay)  # the first caller is running: wait for its answer
            delay = min(delay * 2, 0.25)

    async def _produce(
        self, done_key: str, lock_key: str, token: str, fingerprint: bytes, produce: Callable[[], Awaitable[Answer]]
    ) -> Answer:
        renewing = asyncio.create_task(keep_lease(self._renew, lock_key, token, self._lease_ms))
        try:
            status, body = await produce()
            if status < 300:  # only successes are kept, as in-process
                value = orjson.dumps({"f": fingerprint.hex(), "s": status, "b": body.decode("utf-8", "replace")})
                await self.redis.client.set(done_key, value, px=self._ttl_ms)
            return status, body
        finally:
            await let_go(renewing, self._release, lock_key, token)


def _answer(raw: bytes, fingerprint: bytes) -> Answer:
    stored = orjson.loads(raw)
    if stored["f"] != fingerprint.hex():
        raise _reused()
    return int(stored["s"]), stored["b"].encode()


def _reused() -> ConflictError:
    return ConflictError(
        "this Idempotency-Key was already used with a different request body", code="idempotency_key_reused"
    )
