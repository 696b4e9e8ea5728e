"""The response cache on Redis, shared by replicas: TTL per answer, bounded to ``max_entries``.

Answers live at ``cache:<request hash>`` (``SET ... PX ttl``); a sorted set ``cache:index``
orders them by insertion, and a put beyond ``max_entries`` evicts the oldest in the same script.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson

from ..inference import ChatOutcome, ModelToolCall, TokenUsage
from .redis_conn import RedisHandle
from .redis_pipe import Script

# KEYS: entry, index. ARGV: value, ttl_ms, max_entries, now_ms, entry prefix length.
PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[4]) - tonumber(ARGV[2]))
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  redis.call('DEL', unpack(old))
end
return 1
"""

_PUT = Script.of(PUT)


class RedisResponseCache:
    """Async twin of :class:`runyard.services.cache.MemoryCache` (see ``AsyncResponseCache``)."""

    def __init__(self, redis: RedisHandle, ttl_s: float, max_entries: int) -> None:
        self.redis = redis
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._max = max_entries
        self._execute = redis.pipe.execute
        self._run = redis.pipe.run_script
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
        keys = [self.redis.key("cache", key), self.redis.key("cache-index")]
        await self._run(_PUT, keys, [_encode(result), self._ttl_ms, self._max, int(time.time() * 1000)])


def _encode(result: ChatOutcome) -> bytes:
    """orjson writes the dataclasses itself (``dataclasses.asdict`` deep-copied every field:
    3-4% of a request's CPU); a hit has no attempts of its own."""
    return orjson.dumps(dataclasses.replace(result, attempts=[]))


def _decode(raw: bytes) -> ChatOutcome:
    data: dict[str, Any] = orjson.loads(raw)
    data["usage"] = TokenUsage(**data["usage"])
    data["tool_calls"] = [ModelToolCall(**call) for call in data["tool_calls"]]
    return ChatOutcome(**data)
