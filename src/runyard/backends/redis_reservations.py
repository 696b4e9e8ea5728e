"""Spend-cap reservations this gateway holds, kept from lapsing while their requests run.

A reservation in ``fl:<key>`` lapses ``ttl_s`` after it was taken, so one whose gateway died
stops counting. A request that runs longer (a long stream, a fallback chain, an agent's turn)
must not lose its own: every third of ``ttl_s`` the ones this process holds are pushed back
(``ZADD XX``: one released meanwhile is not brought back). One held past ``max_held_s`` (a
release that never came) is left to lapse.
"""

from __future__ import annotations

import asyncio
import time

from .redis_conn import RedisHandle
from .redis_pipe import Script

# KEYS: the in-flight set of each reservation. ARGV: ttl_s, then the reservations.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', now + ttl, ARGV[i + 1]) == 1 then redis.call('EXPIRE', key, math.ceil(ttl)) end
end
return 1
"""
_RENEW = Script.of(RENEW)
_CHUNK = 500  # reservations per script call


class HeldReservations:
    """The reservations of requests running in this process: ``hold`` when admitted, ``drop``
    when released; renewed on Redis while any are held."""

    def __init__(self, redis: RedisHandle, ttl_s: float, *, max_held_s: float = 3600.0) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.max_held_s = max_held_s
        self._held: dict[str, tuple[str, float]] = {}  # reservation -> (in-flight set, held since)
        self._renewing: asyncio.Task[None] | None = None

    def hold(self, in_flight: str, reservations: list[str]) -> None:
        """``reservations`` were taken in ``in_flight`` (a key's ``fl:<key>`` set)."""
        now = time.monotonic()
        for reservation in reservations:
            self._held[reservation] = (in_flight, now)
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.get_running_loop().create_task(self._renew())

    def drop(self, reservation: str) -> None:
        self._held.pop(reservation, None)

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(self.ttl_s / 3)
            oldest = time.monotonic() - self.max_held_s
            for reservation in [r for r, (_, since) in self._held.items() if since < oldest]:
                del self._held[reservation]
            held = list(self._held.items())
            for i in range(0, len(held), _CHUNK):
                chunk = held[i : i + _CHUNK]
                keys, args = [in_flight for _, (in_flight, _) in chunk], [r for r, _ in chunk]
                self.redis.pipe.submit(_RENEW, keys, [self.ttl_s, *args], what="renew reservations in flight")

    async def aclose(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
        self._held.clear()
