"""Admission leases: a busy caller's admissions taken from Redis a batch at a time.

Every admission on Redis was one script call (15 µs of Redis's CPU, a round trip, and the
command's cost in the gateway). A caller far from all its limits now gets a *lease*: the ADMIT
script takes ``n`` requests from its bucket at once, and, under a spend cap, ``n`` reservations,
only while the spend recorded plus ``n`` more of the largest cost seen (and every request in
flight) stays under the cap, and its tokens are under half the per-minute limit. The process then
admits up to ``n`` requests itself within ``LEASE_S``, handing each a reservation of the lease.

So the limits stay exact across replicas: every request admitted was taken from the shared
bucket and holds a reservation there; a lease only takes them earlier. What a lease did not use
goes back when it lapses (its requests to the bucket, its reservations to the set). Its size
follows use: half the bucket's admissions in the last ``LEASE_S``, up to ``LEASE_MAX`` and an
eighth of the bucket's remaining requests. A bucket admitted fewer than ``LEASE_MIN`` times in
``LEASE_S`` gets no lease: an admission per request, as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .limits import ADMITTED, Admission

LEASE_S = 0.25  # how long a lease's requests may be admitted
LEASE_MAX = 64  # the most requests one lease takes
LEASE_SHARE = 8  # a lease takes at most this fraction (1/LEASE_SHARE) of the bucket's remaining requests
LEASE_MIN = 8  # admissions of a bucket within LEASE_S before it gets leases (32/s a process)
_BUCKETS_KEPT = 10_000

# KEYS: bucket. ARGV: limit, window_s, requests to give back. Moves the bucket's theoretical
# arrival time back by their share of the window (never before now).
GIVE_BACK = """
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local back = tat - (tonumber(ARGV[2]) * 1000000 / tonumber(ARGV[1])) * tonumber(ARGV[3])
if back <= now_us then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.3f', back), 'PX', math.ceil((back - now_us) / 1000) + 1000)
end
return 1
"""


@dataclass(slots=True, eq=False)
class Lease:
    """Requests taken for one bucket: ``left`` of them still to admit until ``until`` (monotonic)."""

    grant: Admission  # the script's answer (``remaining``: after the whole lease was taken)
    left: int
    until: float
    bucket: str
    subject: str
    limit: int | None
    window_s: float
    reservations: list[str] = field(default_factory=list)  # not handed out yet (spend-capped keys)


class Leases:
    """The leases this process holds, one per bucket, and each bucket's recent admissions (what
    sizes its next lease); ``give_back(lease)`` returns what a lapsed lease did not use."""

    def __init__(self, give_back: Callable[[Lease], None]) -> None:
        self._held: dict[str, Lease] = {}
        self._seen: dict[str, list[Any]] = {}  # bucket -> [interval start, admissions in it, in the one before]
        self._remaining: dict[str, int] = {}  # bucket -> its requests left, as Redis last said
        self._refused: dict[str, float] = {}  # bucket -> until when it asks for no lease (near a limit)
        self._give_back = give_back

    def admit(self, bucket: str) -> Admission | None:
        """An admission from the bucket's lease, or None (no lease, used up or lapsed)."""
        lease = self._held.get(bucket)
        if lease is None or not lease.left or time.monotonic() >= lease.until:
            return None
        lease.left -= 1
        self._count(bucket)
        grant = lease.grant
        held = lease.reservations.pop() if lease.reservations else None
        return Admission(
            ADMITTED,
            grant.tokens,
            grant.usage_reset,
            grant.cost,
            grant.period_reset,
            grant.remaining + lease.left,
            grant.reset,
            held,
        )

    def size(self, bucket: str, limit: int | None) -> int:
        """How many requests to ask Redis for: half what the bucket admitted in the last
        ``LEASE_S``, when that was at least ``LEASE_MIN``; else 1 (an admission, no lease)."""
        seen, now = self._seen.get(bucket), time.monotonic()
        if seen is None or now - seen[0] >= 2 * LEASE_S or now < self._refused.get(bucket, 0.0):
            return 1
        recent = max(seen[1], seen[2])
        if recent < LEASE_MIN:
            return 1
        want = min(LEASE_MAX, recent // 2)
        if limit is not None:
            want = min(want, self._remaining.get(bucket, 0) // LEASE_SHARE)
        return max(1, want)

    def granted(self, lease: Lease) -> None:
        """Redis admitted a request for ``lease.bucket``; with ``lease.left`` more (a lease), they
        are kept until ``LEASE_S`` lapses."""
        bucket = lease.bucket
        self._count(bucket)
        self._remaining[bucket] = lease.grant.remaining
        if lease.left:
            self._held[bucket] = lease
            asyncio.get_running_loop().call_later(LEASE_S, self._lapse, lease)

    def refuse(self, bucket: str) -> None:
        """Redis granted less than asked (a limit is near): single admissions for ``LEASE_S``."""
        self._refused[bucket] = time.monotonic() + LEASE_S

    def _count(self, bucket: str) -> None:
        now = time.monotonic()
        seen = self._seen.get(bucket)
        if seen is None:
            if len(self._seen) >= _BUCKETS_KEPT:
                self._seen.clear()
                self._remaining.clear()
                self._refused.clear()
            self._seen[bucket] = [now, 1, 0]
        elif now - seen[0] >= LEASE_S:
            seen[2] = seen[1] if now - seen[0] < 2 * LEASE_S else 0
            seen[0], seen[1] = now, 1
        else:
            seen[1] += 1

    def lapse_all(self) -> None:
        """Give back what every lease held did not use (the process is stopping)."""
        for lease in list(self._held.values()):
            self._lapse(lease)

    def _lapse(self, lease: Lease) -> None:
        if self._held.get(lease.bucket) is lease:
            del self._held[lease.bucket]
        if lease.left:
            self._give_back(lease)
            lease.left = 0
            lease.reservations = []
