"""Limit state on Redis, exact across gateway replicas (:class:`LimitBackend` over Lua scripts).

Keys (under ``[redis] prefix``):

- ``rl:<bucket>`` — a GCRA bucket's theoretical arrival time (microseconds on Redis's clock,
  so replicas' clocks do not matter); expires once the bucket is full again.
- ``tw:<key>`` — a hash of token/cost counts per time slice (``horizon_s / 60``) for the sliding
  token window; expires after the horizon. Its fields ``Ss``/``St`` hold the tokens in the limits
  window as of slice ``Ss``: the window is the horizon, 60 whole slices, so which slices it holds
  changes only when a new slice starts; admissions read that sum (kept current by the usage
  flush) and add the slices up once a slice, not per request (that loop was most of Redis's time
  per request).
- ``use:<key>:<day or month id>`` — a hash: ``t`` tokens, ``c`` cost, ``m`` the largest single
  cost seen, ``s`` set once seeded from the store (a seed raises the counters to the store's
  totals, never adds them: what replicas added is in the store too).
- ``lg`` — the largest single cost any key has spent: the estimate for a key with no cost in its
  period yet (a new key, a new day or month), so it is not held to one request at a time.
- ``fl:<key>`` — a spend-limited key's requests in flight: a sorted set of reservation ids,
  scored by when they lapse (``RESERVATION_TTL_S``, should a gateway die holding one; a live
  gateway renews those it holds: :mod:`runyard.backends.redis_reservations`).

:meth:`RedisLimitBackend.admit` runs tokens, spend and the bucket in one script: one command per
request (which also reads the request's cache entry: :meth:`~RedisLimitBackend.admit_reading`),
or for a busy key one per lease of up to 64 requests (:mod:`runyard.backends.redis_leases`).
``add_usage`` is called synchronously by the usage observer and ``release`` when a request ends:
both queue, and one background flush sends everything queued in one script call (usage before
the reservations it releases).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from typing import Any, Literal

from .limits import ADMITTED, RESERVATION_TTL_S, Admission, LimitBackend, Period, period_bounds
from .redis_conn import RedisHandle
from .redis_leases import GIVE_BACK, LEASE_S, Lease, Leases
from .redis_pipe import Arg, Script
from .redis_reservations import HeldReservations

log = logging.getLogger("runyard.limits")

# Redis time in seconds (float) and microseconds (exact integer in a double, < 2^53).
_NOW = """
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = now_us / 1000000
"""

# GCRA: KEYS[1] bucket; returns {allowed, remaining, reset_s}. Used by hit() and admit().
_GCRA = """
local function gcra(key, limit, window_s, cost)
  local window = window_s * 1000000
  local interval = window / limit
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now_us then tat = now_us end
  local new_tat = tat + interval * cost
  if new_tat - now_us > window + 0.001 then
    local remaining = math.floor((window - (tat - now_us)) / interval + 1e-6)
    if remaining < 0 then remaining = 0 end
    return {0, remaining, tostring((new_tat - window - now_us) / 1000000)}
  end
  if cost > 0 then
    redis.call('SET', key, string.format('%.3f', new_tat), 'PX', math.ceil((new_tat - now_us) / 1000) + 1000)
  end
  return {1, math.floor((window - (new_tat - now_us)) / interval + 1e-6), tostring((new_tat - now_us) / 1000000)}
end
"""

# Tokens and cost in the last `period` seconds from a slice hash: {tokens, cost, reset_s}.
_WINDOW = """
local function window_usage(key, period, slice_s)
  local fields = redis.call('HGETALL', key)
  local tokens, cost, first = 0, 0, nil
  local cutoff = now - period
  for i = 1, #fields, 2 do
    local kind, slice = string.sub(fields[i], 1, 1), tonumber(string.sub(fields[i], 2))
    local start = (slice or 0) * slice_s
    if kind ~= 'S' and start > cutoff then
      if kind == 't' then tokens = tokens + tonumber(fields[i + 1]) else cost = cost + tonumber(fields[i + 1]) end
      if first == nil or start < first then first = start end
    end
  end
  local reset = 0
  if first ~= nil then reset = first + period - now end
  return {tokens, cost, reset}
end
"""

HIT = (
    _NOW
    + _GCRA
    + """
return gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
"""
)

WINDOW = (
    _NOW
    + _WINDOW
    + """
local u = window_usage(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {u[1], tostring(u[2]), tostring(u[3])}
"""
)

# KEYS: bucket, token window, period totals, in-flight set, largest cost of any key, then keys to read. ARGV: limit
# (0: none), window_s, tpm (0: none), spend (-1: none), slice_s, reservation id, reservation ttl_s,
# the requests wanted (more than 1: a lease, redis_leases.py; granted only far from every limit).
# Returns {verdict, tokens, usage_reset, cost, allowed, remaining, reset, granted} (verdicts:
# limits.py), then each read key's value (nil when refused: the caller raises instead of reading).
# Granted more than one request, the reservations are "<id>:1" .. "<id>:<granted>".
ADMIT = (
    _NOW
    + _GCRA
    + _WINDOW
    + """
local limit, window_s, tpm, spend, slice_s, want =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[8])
local verdict, tokens, usage_reset, cost = 0, 0, 0, 0
if tpm > 0 then
  local slice = math.floor(now / slice_s)
  local cached = redis.call('HMGET', KEYS[2], 'Ss', 'St')
  if tonumber(cached[1]) == slice then
    tokens = tonumber(cached[2])
  else
    tokens = window_usage(KEYS[2], window_s, slice_s)[1]
    redis.call('HSET', KEYS[2], 'Ss', slice, 'St', tokens)
    if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], math.ceil(window_s) + 1) end
  end
  if tokens >= tpm then
    verdict = 1
    usage_reset = window_usage(KEYS[2], window_s, slice_s)[3]
  end
end
if spend >= 0 and verdict == 0 then
  local totals = redis.call('HMGET', KEYS[3], 'c', 'm')
  cost = tonumber(totals[1] or '0')
  if cost >= spend then
    verdict = 2
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
    local n = redis.call('ZCARD', KEYS[4])
    local largest = totals[2]
    if (n > 0 or want > 1) and not largest then largest = redis.call('GET', KEYS[5]) end
    if n > 0 and (not largest or cost + n * tonumber(largest) >= spend) then verdict = 4 end
    -- a lease: room for all of it too, beside those in flight
    if want > 1 and (not largest or cost + (n + want) * tonumber(largest) >= spend) then want = 1 end
  end
end
if tpm > 0 and want > 1 and tokens * 2 >= tpm then want = 1 end
local g = {1, 0, '0'}
if limit > 0 then
  local take = 0
  if verdict == 0 then take = want end
  g = gcra(KEYS[1], limit, window_s, take)
  if g[1] == 0 and verdict == 0 and want > 1 then  -- the lease does not fit: one request
    want = 1
    g = gcra(KEYS[1], limit, window_s, 1)
  end
  if g[1] == 0 and verdict == 0 then verdict = 3 end
end
local granted = 0
if verdict == 0 then granted = want end
if spend >= 0 and verdict == 0 then
  local ttl = tonumber(ARGV[7])
  if granted == 1 then
    redis.call('ZADD', KEYS[4], now + ttl, ARGV[6])
  else
    for i = 1, granted do redis.call('ZADD', KEYS[4], now + ttl, ARGV[6] .. ':' .. i) end
  end
  redis.call('EXPIRE', KEYS[4], math.ceil(ttl))
end
local reply = {verdict, tokens, tostring(usage_reset), tostring(cost), g[1], g[2], g[3], granted}
for i = 6, #KEYS do
  if verdict == 0 then reply[#reply + 1] = redis.call('GET', KEYS[i]) else reply[#reply + 1] = false end
end
return reply
"""
)

# One flush in one call. KEYS: token window, day totals, month totals of each usage entry, then
# the in-flight set of each release, then the largest cost of any key, then the flushes applied
# (per process, its last serial). ARGV: slice_s, horizon_s, the number of usage entries, then per
# entry tokens, cost, day_ttl, month_ttl, its largest single cost; then the released ids; then
# this process's origin and the flush's serial. A flush sent again (its reply was lost: it may
# have run) whose serial is not above the last applied is skipped, so it counts once.
ADD = (
    _NOW
    + """
local applied, origin, serial = KEYS[#KEYS], ARGV[#ARGV - 1], tonumber(ARGV[#ARGV])
if tonumber(redis.call('HGET', applied, origin) or '-1') >= serial then return 0 end
redis.call('HSET', applied, origin, serial)
redis.call('EXPIRE', applied, 86400)
local slice_s, horizon = tonumber(ARGV[1]), tonumber(ARGV[2])
local entries = tonumber(ARGV[3])
local slice = math.floor(now / slice_s)
local oldest = math.floor((now - horizon) / slice_s)
local top = nil
for e = 0, entries - 1 do
  local k, a = e * 3, 4 + e * 5
  local tokens, cost, largest = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 4]
  if not top or tonumber(largest) > tonumber(top) then top = largest end
  redis.call('HINCRBY', KEYS[k + 1], 't' .. slice, tokens)
  redis.call('HINCRBYFLOAT', KEYS[k + 1], 'c' .. slice, cost)
  if tonumber(redis.call('HGET', KEYS[k + 1], 'Ss')) == slice then redis.call('HINCRBY', KEYS[k + 1], 'St', tokens) end
  redis.call('EXPIRE', KEYS[k + 1], math.ceil(horizon) + 1)
  for i, ttl in ipairs({ARGV[a + 2], ARGV[a + 3]}) do
    local totals = KEYS[k + 1 + i]
    redis.call('HINCRBY', totals, 't', tokens)
    redis.call('HINCRBYFLOAT', totals, 'c', cost)
    local seen = redis.call('HGET', totals, 'm')
    if not seen or tonumber(largest) > tonumber(seen) then redis.call('HSET', totals, 'm', largest) end
    redis.call('EXPIRE', totals, ttl)
  end
  -- drop slices older than the horizon now and then
  if math.random(32) == 1 then
    for _, f in ipairs(redis.call('HKEYS', KEYS[k + 1])) do
      local at = tonumber(string.sub(f, 2))
      if at and at < oldest then redis.call('HDEL', KEYS[k + 1], f) end
    end
  end
end
for r = entries * 3 + 1, #KEYS - 2 do
  redis.call('ZREM', KEYS[r], ARGV[4 + entries * 5 + r - entries * 3 - 1])
end
if top then
  local any = redis.call('GET', KEYS[#KEYS - 1])
  if not any or tonumber(top) > tonumber(any) then redis.call('SET', KEYS[#KEYS - 1], top) end
end
return 1
"""
)

# KEYS: period totals, largest cost of any key. ARGV: tokens, cost, ttl, largest single cost ('':
# none). The counters become the larger of theirs and the store's: what replicas added since the
# hash began is in the store too (recorded with each inference), so adding would count it twice.
SEED = """
for i, field in ipairs({'t', 'c'}) do
  if tonumber(ARGV[i]) > tonumber(redis.call('HGET', KEYS[1], field) or '0') then
    redis.call('HSET', KEYS[1], field, ARGV[i])
  end
end
redis.call('HSET', KEYS[1], 's', 1)
if ARGV[4] ~= '' then
  local seen = redis.call('HGET', KEYS[1], 'm')
  if not seen or tonumber(ARGV[4]) > tonumber(seen) then redis.call('HSET', KEYS[1], 'm', ARGV[4]) end
  local any = redis.call('GET', KEYS[2])
  if not any or tonumber(ARGV[4]) > tonumber(any) then redis.call('SET', KEYS[2], ARGV[4]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_HIT, _WINDOW_SCRIPT, _ADMIT, _ADD, _SEED, _GIVE_BACK = map(Script.of, (HIT, WINDOW, ADMIT, ADD, SEED, GIVE_BACK))
_PERIOD_GRACE_S = 3600  # period totals outlive their period by this much
_KEYS_KEPT = 10_000  # ADMIT key lists kept (one per caller and period)

# Reservation ids: this process's random origin and a serial (a uuid4 a request cost 2% of the CPU).
_ORIGIN = [secrets.token_hex(8)]
_SERIAL = itertools.count()
os.register_at_fork(after_in_child=lambda: _ORIGIN.__setitem__(0, secrets.token_hex(8)))


def _reservation_id() -> str:
    return f"{_ORIGIN[0]}{next(_SERIAL):x}"


def _reserved(reservation: str, granted: int) -> list[str]:
    """The reservation ids ADMIT took for ``granted`` requests: the id itself for one, else
    "<id>:1" .. "<id>:<granted>" (none without a spend limit: ``reservation`` empty)."""
    if not reservation or granted < 1:
        return []
    return [reservation] if granted == 1 else [f"{reservation}:{i}" for i in range(1, granted + 1)]


def _admission(reply: list[Any], period_reset: float, reserved: list[str]) -> Admission:
    """ADMIT's reply as an Admission (holding the first of ``reserved`` when admitted under a
    spend limit; the others are a lease's)."""
    verdict, tokens, usage_reset, cost, _, remaining, reset = reply[:7]
    held = reserved[0] if reserved and int(verdict) == ADMITTED else None
    return Admission(
        int(verdict), int(tokens), float(usage_reset), float(cost), period_reset, int(remaining), float(reset), held
    )


class RedisLimitBackend(LimitBackend):
    """:class:`LimitBackend` shared by every replica using the same Redis and prefix."""

    def __init__(
        self, redis: RedisHandle, *, horizon_s: float = 60.0, reservation_ttl_s: float = RESERVATION_TTL_S
    ) -> None:
        self.redis = redis
        self.reservation_ttl_s = reservation_ttl_s
        self.held = HeldReservations(redis, reservation_ttl_s)
        self.horizon_s = horizon_s
        self.slice_s = horizon_s / 60
        self._run = redis.pipe.run_script
        self._any = self.redis.key("lg")  # the largest single cost any key has spent
        self._keys: dict[tuple[str, str, str], list[str]] = {}  # (subject, bucket, period id) -> ADMIT's keys
        self._pending: dict[str, list[float]] = {}  # key -> [tokens, cost, largest cost] not yet sent
        self._releases: list[tuple[str, str]] = []  # (key, reservation) not yet given back
        self._flushing: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()  # one flush at a time: serials reach Redis in order
        self._unsent: tuple[int, dict[str, list[float]], list[tuple[str, str]]] | None = None
        self._leases = Leases(self._give_back)
        self._asking: dict[str, asyncio.Future[None]] = {}  # bucket -> a lease being taken

    def _period_key(self, key: str, period: Literal["day", "month"], now: float) -> tuple[str, float]:
        """(the period's totals key, seconds until the period ends)."""
        ident, _, end = period_bounds(period, now)
        return self.redis.key("use", key, ident), end - now

    async def hit(self, key: str, limit: int, window_s: float, cost: int = 1) -> tuple[bool, int, float]:
        allowed, remaining, reset = await self._run(_HIT, [self.redis.key("rl", key)], [limit, window_s, cost])
        return bool(allowed), int(remaining), float(reset)

    reads_with_admit = True

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
        admission, _ = await self.admit_reading([], subject, rk, limit, window_s, tpm, spend_limit, period)
        return admission

    async def admit_reading(self, reads: list[str], *admit: Any) -> tuple[Admission, list[bytes | None]]:
        """The admission script, reading each of ``reads`` too: one command, one round trip. From
        the caller's lease (redis_leases.py) when it holds one: then only the reads go to Redis."""
        subject, rk, limit = admit[:3]
        leased = self._leases.admit(rk)
        while leased is None and rk in self._asking:  # a lease is being taken: it may serve this one too
            await asyncio.shield(self._asking[rk])
            leased = self._leases.admit(rk)
        if leased is not None:
            values = await asyncio.gather(*(self.redis.pipe.execute("GET", key) for key in reads)) if reads else []
            return leased, list(values)
        want = self._leases.size(rk, limit)
        keys, args, period_reset = self._admit_call(*admit)
        args.append(want)
        if want > 1:
            self._asking[rk] = asking = asyncio.get_running_loop().create_future()
        try:
            reply: list[Any] = await self._run(_ADMIT, keys + reads, args)
        finally:
            if want > 1:
                del self._asking[rk]
                asking.set_result(None)
        granted = int(reply[7])
        reserved = _reserved(args[5], granted)
        admission = _admission(reply, period_reset, reserved)
        if reserved:
            self.held.hold(keys[3], reserved)  # keys[3]: the key's in-flight set
        if granted:
            until = time.monotonic() + LEASE_S
            self._leases.granted(Lease(admission, granted - 1, until, rk, subject, limit, args[1], reserved[1:]))
        if granted < want:  # near a limit: no leases for a while (each request asks Redis, at once)
            self._leases.refuse(rk)
        return admission, reply[8:]

    def _give_back(self, lease: Lease) -> None:
        """A lapsed lease's unused requests back to the bucket, its reservations released."""
        for reservation in lease.reservations:
            self.release(lease.subject, reservation)
        if lease.limit:
            keys, args = [self.redis.key("rl", lease.bucket)], [lease.limit, lease.window_s, lease.left]
            self.redis.pipe.submit(_GIVE_BACK, keys, args, what="give a lease's requests back")

    def _admit_call(self, *admit: Any) -> tuple[list[str], list[Any], float]:
        """The ADMIT script's keys and arguments for :meth:`admit`'s arguments ``admit``, and the
        seconds until its ``period`` ends."""
        subject, rk, limit, window_s, tpm, spend_limit, period = admit
        ident, _, end = period_bounds(period, now := time.time())
        period_reset = end - now
        keys = self._keys.get((subject, rk, ident))
        if keys is None:  # the key names, built once per caller and period
            if len(self._keys) >= _KEYS_KEPT:
                self._keys.clear()
            key = self.redis.key
            keys = [key("rl", rk), key("tw", subject), key("use", subject, ident), key("fl", subject), self._any]
            self._keys[(subject, rk, ident)] = keys
        spend = -1 if spend_limit is None else spend_limit
        reservation = _reservation_id() if spend_limit is not None else ""
        ttl = self.reservation_ttl_s
        return keys, [limit or 0, window_s, tpm or 0, spend, self.slice_s, reservation, ttl], period_reset

    def add_usage(self, key: str, tokens: int = 0, cost: float = 0.0) -> None:
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = [tokens, cost, cost]
        else:
            pending[0] += tokens
            pending[1] += cost
            pending[2] = max(pending[2], cost)
        self._schedule()

    def release(self, key: str, reservation: str) -> None:
        self.held.drop(reservation)
        self._releases.append((key, reservation))
        self._schedule()

    def _schedule(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        """Send the queued usage, then the queued releases (one script call a round, until nothing
        is left), one flush at a time; a call that failed is sent again as it was, first, by the
        next flush (Redis skips it if it ran: see ``ADD``)."""
        async with self._sending:
            while self._unsent is not None or self._pending or self._releases:
                if self._unsent is None:
                    batch, self._pending = self._pending, {}
                    releases, self._releases = self._releases, []
                    self._unsent = (next(_SERIAL), batch, releases)
                if not await self._send(*self._unsent):
                    return
                self._unsent = None

    async def _send(self, serial: int, batch: dict[str, list[float]], releases: list[tuple[str, str]]) -> bool:
        """One script call (one round trip): the usage, then the releases."""
        now = time.time()
        keys: list[str] = []
        args: list[Arg] = [self.slice_s, self.horizon_s, len(batch)]
        for key, (tokens, cost, largest) in batch.items():
            day_key, day_left = self._period_key(key, "day", now)
            month_key, month_left = self._period_key(key, "month", now)
            keys += [self.redis.key("tw", key), day_key, month_key]
            ttls = [int(day_left) + _PERIOD_GRACE_S, int(month_left) + _PERIOD_GRACE_S]
            args += [int(tokens), repr(float(cost)), *ttls, repr(float(largest))]
        keys += [self.redis.key("fl", key) for key, _ in releases]
        keys += [self._any, self.redis.key("adds")]
        args += [reservation for _, reservation in releases]
        args += [_ORIGIN[0], serial]
        try:
            await self._run(_ADD, keys, args, linger=True)  # sent with the next admission
        except Exception:
            log.warning("could not record usage on Redis; will retry", exc_info=True)
            return False
        return True

    async def get_usage(self, key: str, period: Period) -> tuple[int, float, float]:
        if isinstance(period, str):
            period_key, left = self._period_key(key, period, time.time())
            tokens, cost = await self.redis.pipe.execute("HMGET", period_key, "t", "c")
            return int(tokens or 0), float(cost or 0.0), left
        tokens, cost, reset = await self._run(_WINDOW_SCRIPT, [self.redis.key("tw", key)], [period, self.slice_s])
        return int(tokens), max(float(cost), 0.0), float(reset)

    async def seed_usage(
        self, key: str, period: Literal["day", "month"], tokens: int, cost: float, largest: float | None = None
    ) -> None:
        period_key, left = self._period_key(key, period, time.time())
        seen = "" if largest is None else repr(float(largest))
        ttl = int(left) + _PERIOD_GRACE_S
        await self._run(_SEED, [period_key, self._any], [int(tokens), repr(float(cost)), ttl, seen])

    async def drain(self) -> None:
        """Wait until everything queued so far is on Redis (flushes run one at a time: this one
        after the flush under way)."""
        await self.flush()

    async def aclose(self) -> None:
        self._leases.lapse_all()  # what the leases did not use goes back before the last flush
        await self.redis.pipe.flush()
        await self.drain()
        await self.held.aclose()
