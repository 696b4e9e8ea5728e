"""The response cache on Redis, shared by replicas: TTL per answer, bounded to ``max_entries``.

Answers live at ``cache:<request hash>`` (``SET ... PX ttl``); a sorted set ``cache:index``
orders them by insertion. A put is three plain commands, queued to go out with the next write
(the answer, its index entry, the index's size); only a put that finds the index over
``max_entries`` runs the trim script, which drops the expired entries and then the oldest, down
to a tenth below the bound (so a full cache trims once per tenth of its size, not on every put).
A script per put cost Redis 15 µs of CPU, the plain commands 3-4 (bench/README.md).
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

# KEYS: index. ARGV: now_ms, ttl_ms, the most entries to keep.
TRIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[1], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1)
  redis.call('DEL', unpack(old))
end
return 1
"""
_TRIM = Script.of(TRIM)
_WRITE = "write to the response cache"


class RedisResponseCache:
    """Async twin of :class:`runyard.services.cache.MemoryCache` (see ``AsyncResponseCache``)."""

    def __init__(self, redis: RedisHandle, ttl_s: float, max_entries: int) -> None:
        self.redis = redis
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._max = max_entries
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
        entry, index = self.redis.key("cache", key), self.redis.key("cache-index")
        now_ms = int(time.time() * 1000)
        send = self.redis.pipe.send
        send("SET", entry, _encode(result), "PX", self._ttl_ms, what=_WRITE)
        send("ZADD", index, now_ms, entry, what=_WRITE)
        send("ZCARD", index, what=_WRITE).add_done_callback(lambda size: self._trim_if_over(size, now_ms))

    def _trim_if_over(self, size: asyncio.Future[Any], now_ms: int) -> None:
        if not size.cancelled() and size.exception() is None and size.result() > self._max:
            keep = self._max - max(1, self._max // 10) if self._max > 1 else self._max
            index = self.redis.key("cache-index")
            self.redis.pipe.submit(_TRIM, [index], [now_ms, self._ttl_ms, keep], what="trim the response cache")


def _encode(result: ChatOutcome) -> bytes:
    """orjson writes the dataclasses itself (``dataclasses.asdict`` deep-copied every field:
    3-4% of a request's CPU); a hit has no attempts of its own."""
    return orjson.dumps(dataclasses.replace(result, attempts=[]))


def _decode(raw: bytes) -> ChatOutcome:
    data: dict[str, Any] = orjson.loads(raw)
    data["usage"] = TokenUsage(**data["usage"])
    data["tool_calls"] = [ModelToolCall(**call) for call in data["tool_calls"]]
    return ChatOutcome(**data)
