"""The response cache on Redis, shared by replicas: TTL per answer, bounded to ``max_entries``
answers and ``max_bytes`` of their stored form.

Answers live at ``cache:<request hash>`` (``SET ... PX ttl``); a sorted set ``cache-index``
orders them by insertion, a hash ``cache-sizes`` holds each one's size and ``cache-bytes`` their
running total. A put is plain commands queued to go out with the next write (the answer, its
index entry, the size it replaces, if any, which then comes off the total, its size, the new
total, the index's size); only a put that finds the cache over a bound runs the trim script,
which drops the expired entries, then the oldest, down to a tenth below each bound (so a full
cache trims once per tenth of its size, not on every put). A script per put cost Redis 15 µs of
CPU, the plain commands 3-4 (bench/README.md); with the byte bound's three they cost 6.0-7.8.
An answer larger than ``max_bytes`` alone is not cached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import orjson

from ..inference import ChatOutcome, ModelToolCall, TokenUsage
from .redis_conn import RedisHandle
from .redis_pipe import Script

# KEYS: index, sizes, total. ARGV: now_ms, ttl_ms, the most entries and bytes to keep.
# Members go 1,000 at a time (unpack() of a longer list overflows Lua's stack), their sizes
# taken off the total; the cost is the members dropped, not the cache's size.
TRIM = """
local function drop(members)
  local freed = 0
  for i = 1, #members, 1000 do
    local chunk = {unpack(members, i, math.min(i + 999, #members))}
    for _, n in ipairs(redis.call('HMGET', KEYS[2], unpack(chunk))) do
      if n then freed = freed + tonumber(n) end
    end
    redis.call('ZREM', KEYS[1], unpack(chunk))
    redis.call('HDEL', KEYS[2], unpack(chunk))
    redis.call('DEL', unpack(chunk))
  end
  return freed
end
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
total = total - drop(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2])))
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if over > 0 then total = total - drop(redis.call('ZRANGE', KEYS[1], 0, over - 1)) end
local keep = tonumber(ARGV[4])
while total > keep do
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 99)
  if #oldest == 0 then break end
  local sizes, left, n = redis.call('HMGET', KEYS[2], unpack(oldest)), total, 0
  while left > keep and n < #oldest do
    n = n + 1
    left = left - (sizes[n] and tonumber(sizes[n]) or 0)
  end
  total = total - drop({unpack(oldest, 1, n)})
end
if redis.call('ZCARD', KEYS[1]) == 0 or total < 0 then
  redis.call('DEL', KEYS[2])
  total = 0
end
redis.call('SET', KEYS[3], total)
return total
"""
_TRIM = Script.of(TRIM)
_WRITE = "write to the response cache"


class RedisResponseCache:
    """Async twin of :class:`runyard.services.cache.MemoryCache` (see ``AsyncResponseCache``)."""

    def __init__(self, redis: RedisHandle, ttl_s: float, max_entries: int, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.redis = redis
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._max = max_entries
        self._max_bytes = max_bytes
        self._index, self._sizes, self._total = (
            redis.key(name) for name in ("cache-index", "cache-sizes", "cache-bytes")
        )
        self._trimming: asyncio.Future[Any] | None = None  # one trim at a time from this replica
        self._execute = redis.pipe.execute
        self.hits = 0
        self.misses = 0

    async def get(self, key: str, admission: Any = None) -> ChatOutcome | None:
        """The cached answer; with ``admission`` (a request's deferred one, see ``services/limits``)
        not yet taken, it is taken in the same round trip (a refusal raises its 429)."""
        entry = self.redis.key("cache", key)
        if admission is not None and not admission.taken:
            (raw,) = await admission.take([entry])
        else:
            raw = await self._execute("GET", entry)
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        return _decode(raw)

    async def put(self, key: str, result: ChatOutcome) -> None:
        """Queue the answer (it goes out with the next command waited on, within ``LINGER_S``):
        the caller's answer does not wait for Redis; a failure is logged."""
        value = _encode(result)
        if len(value) > self._max_bytes:
            return
        entry, now_ms = self.redis.key("cache", key), int(time.time() * 1000)
        send = self.redis.pipe.send
        send("SET", entry, value, "PX", self._ttl_ms, what=_WRITE)
        send("ZADD", self._index, now_ms, entry, what=_WRITE)
        old = send("HGET", self._sizes, entry, what=_WRITE)
        old.add_done_callback(self._replaced)
        send("HSET", self._sizes, entry, len(value), what=_WRITE)
        total = send("INCRBY", self._total, len(value), what=_WRITE)
        size = send("ZCARD", self._index, what=_WRITE)  # replies come in order: the others are in by then
        size.add_done_callback(lambda size: self._trim_if_over(size, total, old, now_ms))

    def _replaced(self, old: asyncio.Future[Any]) -> None:
        """The answer put replaced one still counted (a repeat after its TTL, or two replicas
        at once): its size comes off the total (sent before any trim this put starts)."""
        if _ok(old) and old.result() is not None:
            self.redis.pipe.send("DECRBY", self._total, int(old.result()), what=_WRITE)

    def _trim_if_over(
        self, size: asyncio.Future[Any], total: asyncio.Future[Any], old: asyncio.Future[Any], now_ms: int
    ) -> None:
        if self._trimming is not None or not (_ok(size) and _ok(total) and _ok(old)):
            return
        if size.result() > self._max or total.result() - int(old.result() or 0) > self._max_bytes:
            keep = self._max - max(1, self._max // 10) if self._max > 1 else self._max
            keep_bytes = self._max_bytes - self._max_bytes // 10
            args = [now_ms, self._ttl_ms, keep, keep_bytes]
            trim = self.redis.pipe.submit(
                _TRIM, [self._index, self._sizes, self._total], args, what="trim the response cache"
            )
            self._trimming = trim
            trim.add_done_callback(self._trimmed)

    def _trimmed(self, _trim: asyncio.Future[Any]) -> None:
        self._trimming = None


def _ok(reply: asyncio.Future[Any]) -> bool:
    return not reply.cancelled() and reply.exception() is None


def _encode(result: ChatOutcome) -> bytes:
    """orjson writes the dataclasses itself (``dataclasses.asdict`` deep-copied every field:
    3-4% of a request's CPU); a hit has no attempts of its own."""
    return orjson.dumps(dataclasses.replace(result, attempts=[]))


def _decode(raw: bytes) -> ChatOutcome:
    data: dict[str, Any] = orjson.loads(raw)
    data["usage"] = TokenUsage(**data["usage"])
    data["tool_calls"] = [ModelToolCall(**call) for call in data["tool_calls"]]
    return ChatOutcome(**data)
