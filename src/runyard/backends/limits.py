"""Limit state behind one small interface: request rates, token usage and spend per key.

:class:`LimitBackend` is what :mod:`runyard.services.limits` talks to. The in-process
implementation here is exact within one process; a Redis implementation (exact across
replicas) plugs in behind the same four methods:

- ``hit(key, limit, window_s, cost=1)`` — a GCRA (generic cell rate algorithm) token bucket:
  ``limit`` requests per ``window_s`` with a burst of ``limit``. Returns ``(allowed,
  remaining, reset_s)``; when refused, ``reset_s`` is the wait until one request fits (the
  Retry-After), else the time until the bucket is full again. ``cost=0`` only peeks.
  One float of state per key; O(1). (In Redis: one key and a short Lua script.) The
  in-process bucket runs on the monotonic clock; ``reset_s`` is relative, so callers add it
  to their own wall clock for headers.
- ``add_usage(key, tokens=0, cost=0.0)`` — records an inference's tokens (into a sliding
  window) and cost (into the current UTC day and month). Synchronous and cheap: it runs in
  the AI service's usage observer; a networked backend buffers and flushes.
- ``get_usage(key, period)`` — ``(tokens, cost, reset_s)``: for a number, the tokens and
  cost in the last ``period`` seconds (``reset_s``: until the oldest of them leaves the
  window); for ``"day"`` or ``"month"``, the current UTC period's totals (``reset_s``: until
  it ends).
- ``seed_usage(key, period, tokens, cost, largest)`` — initialise a period's totals (and the
  key's largest single cost, when it has one) from the persisted inferences (once per key and
  process, before its first use); a backend that persists totals itself keeps its own when it
  already has the period.

A spend cap is exact to within one request's cost under concurrent load: ``admit`` counts the
key's requests in flight (a *reservation* each, given back by ``release`` once the request's
usage is recorded) and refuses one (SPEND_PENDING) while the recorded spend plus, for each in
flight, the largest single cost seen could reach the cap. A key with no cost yet is estimated by
the largest any key has spent (a new key, a new period: not one request at a time); before any
cost at all, one at a time. So every admitted request found room for all those still running,
and the cap is overshot by at most one request's cost (an inference's: a request that makes
several, an agent's turn, may overshoot by its own total).
"""

from __future__ import annotations

import calendar
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from time import monotonic
from typing import Any, Literal, Union

Period = Union[float, Literal["day", "month"]]

__all__ = ["Admission", "InProcessLimitBackend", "LimitBackend", "Period", "period_bounds"]

ADMITTED, OVER_TOKENS, OVER_SPEND, OVER_RATE, SPEND_PENDING = 0, 1, 2, 3, 4
RESERVATION_TTL_S = 120  # a reservation its gateway never released (it died) lapses after this


@dataclass(frozen=True, slots=True)
class Admission:
    """One request's verdict (:meth:`LimitBackend.admit`): ``verdict`` is ADMITTED or what refused
    it; ``tokens``/``usage_reset`` the window's tokens (when ``tpm`` is set), ``cost`` the period's
    spend (when a spend limit is set), ``remaining``/``reset`` the request bucket (when limited;
    on a refusal the bucket was only peeked)."""

    verdict: int
    tokens: int = 0
    usage_reset: float = 0.0
    cost: float = 0.0
    period_reset: float = 0.0
    remaining: int = 0
    reset: float = 0.0
    reservation: str | None = None  # taken when admitted under a spend limit: ``release`` it after


def spend_verdict(cost: float, spend_limit: float, in_flight: int, largest: float | None) -> int:
    """ADMITTED, OVER_SPEND, or SPEND_PENDING (the requests in flight could reach the cap)."""
    if cost >= spend_limit:
        return OVER_SPEND
    if in_flight and (largest is None or cost + in_flight * largest >= spend_limit):
        return SPEND_PENDING
    return ADMITTED


class LimitBackend(ABC):
    reads_with_admit = False  # admit_reading takes an admission and reads keys in one round trip

    @abstractmethod
    async def hit(self, key: str, limit: int, window_s: float, cost: int = 1) -> tuple[bool, int, float]: ...

    @abstractmethod
    def add_usage(self, key: str, tokens: int = 0, cost: float = 0.0) -> None: ...

    @abstractmethod
    async def get_usage(self, key: str, period: Period) -> tuple[int, float, float]: ...

    @abstractmethod
    async def seed_usage(
        self, key: str, period: Literal["day", "month"], tokens: int, cost: float, largest: float | None = None
    ) -> None: ...

    async def admit(
        self,
        subject: str,
        rk: str,
        limit: int | None,
        window_s: float,
        tpm: int | None,
        spend_limit: float | None,
        period: Literal["day", "month"],
    ) -> Admission:
        """Check tokens, then spend, then take one request from ``rk``'s bucket (only if the others
        pass). A networked backend does it in one round trip (Redis: one script)."""
        tokens, usage_reset, cost, period_reset = 0, 0.0, 0.0, 0.0
        verdict = ADMITTED
        if tpm is not None:
            tokens, _, usage_reset = await self.get_usage(subject, window_s)
            if tokens >= tpm:
                verdict = OVER_TOKENS
        if spend_limit is not None and verdict == ADMITTED:
            _, cost, period_reset = await self.get_usage(subject, period)
            if cost >= spend_limit:
                verdict = OVER_SPEND
        remaining, reset = 0, 0.0
        if limit is not None:
            allowed, remaining, reset = await self.hit(rk, limit, window_s, 1 if verdict == ADMITTED else 0)
            if not allowed and verdict == ADMITTED:
                verdict = OVER_RATE
        return Admission(verdict, tokens, usage_reset, cost, period_reset, remaining, reset)

    async def admit_reading(self, reads: list[str], *admit: Any) -> tuple[Admission, list[bytes | None]]:
        """:meth:`admit` (``admit``: its arguments), and the values at the (store) keys ``reads``
        in the same round trip (when ``reads_with_admit``)."""
        raise NotImplementedError

    def release(self, key: str, reservation: str) -> None:  # noqa: B027 - optional hook
        """Give back a reservation ``admit`` took (after the request's usage was added)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections (a networked backend)."""


def period_bounds(period: Literal["day", "month"], now: float) -> tuple[str, float, float]:
    """(id, start, end) of the UTC calendar ``period`` holding ``now`` (epoch seconds); the last
    answer per period is kept (every admission asks, and the answer changes once a day)."""
    last = _LAST_BOUNDS.get(period)
    if last is not None and last[1] <= now < last[2]:
        return last
    bounds = _LAST_BOUNDS[period] = _period_bounds(period, now)
    return bounds


_LAST_BOUNDS: dict[str, tuple[str, float, float]] = {}


def _period_bounds(period: Literal["day", "month"], now: float) -> tuple[str, float, float]:
    t = time.gmtime(now)
    if period == "day":
        start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
        return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", float(start), float(start + 86400)
    start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    end = calendar.timegm((year, month, 1, 0, 0, 0))
    return f"{t.tm_year:04d}-{t.tm_mon:02d}", float(start), float(end)


class _KeyUsage:
    """Token/cost stream (coalesced buckets) plus the current day's and month's totals."""

    __slots__ = (
        "buckets",
        "current_until",
        "day",
        "day_cost",
        "day_tokens",
        "month",
        "month_cost",
        "month_tokens",
        "w_cost",
        "w_tokens",
    )

    def __init__(self) -> None:
        self.buckets: deque[list[float]] = deque()  # [start, tokens, cost]
        self.w_tokens = 0
        self.w_cost = 0.0
        self.day = ""
        self.day_tokens = 0
        self.day_cost = 0.0
        self.month = ""
        self.month_tokens = 0
        self.month_cost = 0.0
        self.current_until = 0.0  # its day and month are the current ones until then (epoch s)


class InProcessLimitBackend(LimitBackend):
    """Exact in one process (the embedded default). ``horizon_s``: the longest window
    ``get_usage`` is asked for (older token buckets are dropped); ``resolution_s``: token
    usage within this much time shares one bucket (bounds memory to horizon/resolution)."""

    SWEEP_EVERY = 8192  # hits between sweeps of idle rate-limit state

    def __init__(self, *, horizon_s: float = 60.0, resolution_s: float | None = None) -> None:
        self.horizon_s = horizon_s
        self.resolution_s = resolution_s if resolution_s is not None else horizon_s / 100
        self._tat: dict[str, float] = {}  # GCRA theoretical arrival time per key
        self._usage: dict[str, _KeyUsage] = {}
        self._in_flight: dict[str, int] = {}  # spend reservations per key
        self._largest: dict[str, float] = {}  # the largest single cost seen per key
        self._largest_any: float | None = None  # ... and by any key (a new key's estimate)
        self._hits = 0
        self._day = self._month = ""
        self._period_end = self._day_end = self._month_end = 0.0

    async def admit(
        self,
        subject: str,
        rk: str,
        limit: int | None,
        window_s: float,
        tpm: int | None,
        spend_limit: float | None,
        period: Literal["day", "month"],
    ) -> Admission:
        # LimitBackend.admit's steps, called directly (no coroutine per step: the embedded hot path)
        tokens, usage_reset, cost, period_reset, verdict = 0, 0.0, 0.0, 0.0, ADMITTED
        if tpm is not None:
            tokens, _, usage_reset = self.usage_now(subject, window_s)
            verdict = OVER_TOKENS if tokens >= tpm else ADMITTED
        if spend_limit is not None and verdict == ADMITTED:
            _, cost, period_reset = self.usage_now(subject, period)
            in_flight = self._in_flight.get(subject, 0)
            verdict = spend_verdict(cost, spend_limit, in_flight, self._largest.get(subject, self._largest_any))
        remaining, reset = 0, 0.0
        if limit is not None:
            allowed, remaining, reset = self.hit_now(rk, limit, window_s, 1 if verdict == ADMITTED else 0)
            if not allowed and verdict == ADMITTED:
                verdict = OVER_RATE
        reservation = None
        if spend_limit is not None and verdict == ADMITTED:
            self._in_flight[subject] = self._in_flight.get(subject, 0) + 1
            reservation = subject
        return Admission(verdict, tokens, usage_reset, cost, period_reset, remaining, reset, reservation)

    def release(self, key: str, reservation: str) -> None:
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    # -- request rates (GCRA) ------------------------------------------------
    async def hit(self, key: str, limit: int, window_s: float, cost: int = 1) -> tuple[bool, int, float]:
        return self.hit_now(key, limit, window_s, cost)

    def hit_now(self, key: str, limit: int, window_s: float, cost: int = 1) -> tuple[bool, int, float]:
        """:meth:`hit` without the coroutine (the in-process fast path)."""
        now = monotonic()  # small numbers: epoch floats would lose the sub-microsecond precision
        interval = window_s / limit
        tat = self._tat.get(key, now)
        if tat < now:
            tat = now
        new_tat = tat + interval * cost
        # Allowed while the bucket, after this request, holds at most `limit` requests' worth.
        if new_tat - now > window_s + 1e-9:
            return False, max(0, int((window_s - (tat - now)) / interval + 1e-6)), new_tat - window_s - now
        if cost:
            self._tat[key] = new_tat
            self._hits += 1
            if self._hits >= self.SWEEP_EVERY:
                self._sweep(now)
        return True, int((window_s - (new_tat - now)) / interval + 1e-6), new_tat - now

    def _sweep(self, now: float) -> None:
        self._hits = 0
        idle = [k for k, tat in self._tat.items() if tat <= now]
        for k in idle:
            del self._tat[k]

    # -- tokens and spend -----------------------------------------------------
    def _roll(self, now: float) -> None:
        if now >= self._period_end:
            self._day, _, self._day_end = period_bounds("day", now)
            self._month, _, self._month_end = period_bounds("month", now)
            self._period_end = min(self._day_end, self._month_end)

    def _state(self, key: str, now: float) -> _KeyUsage:
        u = self._usage.get(key)
        if u is not None and now < u.current_until:
            return u  # the usual case: a known key within its current day and month
        if u is None:
            u = self._usage[key] = _KeyUsage()
        if now >= self._period_end:
            self._roll(now)
        if u.day != self._day:
            u.day, u.day_tokens, u.day_cost = self._day, 0, 0.0
        if u.month != self._month:
            u.month, u.month_tokens, u.month_cost = self._month, 0, 0.0
        u.current_until = self._period_end
        return u

    def _expire(self, u: _KeyUsage, cutoff: float) -> None:
        buckets = u.buckets
        while buckets and buckets[0][0] <= cutoff:
            _, tokens, cost = buckets.popleft()
            u.w_tokens -= int(tokens)
            u.w_cost -= cost

    def _note_largest(self, key: str, cost: float) -> None:
        """``cost`` as the key's (and any key's) largest single cost, if it is."""
        if cost > self._largest.get(key, -1.0):
            self._largest[key] = cost
            if self._largest_any is None or cost > self._largest_any:
                self._largest_any = cost

    def add_usage(self, key: str, tokens: int = 0, cost: float = 0.0) -> None:
        self._note_largest(key, cost)  # known from the first inference on, even a free one
        now = time.time()
        u = self._state(key, now)
        u.day_tokens += tokens
        u.month_tokens += tokens
        u.day_cost += cost
        u.month_cost += cost
        buckets = u.buckets
        if buckets and now - buckets[-1][0] < self.resolution_s:
            last = buckets[-1]
            last[1] += tokens
            last[2] += cost
        else:
            buckets.append([now, tokens, cost])
            if buckets[0][0] <= now - self.horizon_s:
                self._expire(u, now - self.horizon_s)
        u.w_tokens += tokens
        u.w_cost += cost

    async def get_usage(self, key: str, period: Period) -> tuple[int, float, float]:
        return self.usage_now(key, period)

    def usage_now(self, key: str, period: Period) -> tuple[int, float, float]:
        """:meth:`get_usage` without the coroutine (the in-process fast path)."""
        now = time.time()
        if isinstance(period, str):
            s = self._state(key, now)
            if period == "day":
                return s.day_tokens, s.day_cost, self._day_end - now
            return s.month_tokens, s.month_cost, self._month_end - now
        u = self._usage.get(key)
        if u is None:
            return 0, 0.0, 0.0
        buckets = u.buckets
        if not buckets:
            return 0, 0.0, 0.0
        if buckets[0][0] <= now - self.horizon_s:
            self._expire(u, now - self.horizon_s)
            if not buckets:
                return 0, 0.0, 0.0
        if period >= self.horizon_s:
            return u.w_tokens, max(u.w_cost, 0.0), buckets[0][0] + period - now
        cutoff = now - period
        tokens, cost, first = 0, 0.0, 0.0
        for start, t, c in buckets:
            if start > cutoff:
                if not first:
                    first = start
                tokens += int(t)
                cost += c
        return tokens, max(cost, 0.0), (first + period - now) if first else 0.0

    async def seed_usage(
        self, key: str, period: Literal["day", "month"], tokens: int, cost: float, largest: float | None = None
    ) -> None:
        if largest is not None:
            self._note_largest(key, largest)
        u = self._state(key, time.time())  # raised to the store's totals: they hold what was added
        if period == "day":
            u.day_tokens, u.day_cost = max(u.day_tokens, tokens), max(u.day_cost, cost)
        else:
            u.month_tokens, u.month_cost = max(u.month_tokens, tokens), max(u.month_cost, cost)
