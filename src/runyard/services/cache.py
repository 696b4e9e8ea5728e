"""Exact-match response cache for ``cache_strategy="runyard"``: in-process LRU with a TTL, or on
Redis (:mod:`runyard.backends.redis_cache`) when replicas share it."""

from __future__ import annotations

import copy
import hashlib
import time
from collections import OrderedDict
from typing import Any, Protocol

import orjson

from ..inference import ChatOutcome, ChatRequest


class ResponseCache(Protocol):
    def get(self, key: str) -> ChatOutcome | None: ...
    def put(self, key: str, result: ChatOutcome) -> None: ...


class AsyncResponseCache(Protocol):
    """A cache shared by replicas (:class:`runyard.backends.redis_cache.RedisResponseCache`): the
    same two methods, awaited; ``get`` takes the caller's deferred admission with the lookup."""

    async def get(self, key: str, admission: Any = None) -> ChatOutcome | None: ...
    async def put(self, key: str, result: ChatOutcome) -> None: ...


# What a cached answer holds besides its text: the outcome, its usage, the key, the dict slot.
ENTRY_OVERHEAD = 1_000


class MemoryCache:
    """LRU of answers keyed by the normalised request (per process; ``AsyncResponseCache`` when
    shared), at most ``max_entries`` answers and ``max_bytes`` (each weighed as its text, tool
    calls included, plus :data:`ENTRY_OVERHEAD`): long answers reach gigabytes long before
    10,000 entries."""

    def __init__(self, ttl_s: float, max_entries: int, max_bytes: int | None = None) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, tuple[float, ChatOutcome, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> ChatOutcome | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            if item is not None:
                del self._items[key]
                self.bytes -= item[2]
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return _snapshot(item[1])

    def put(self, key: str, result: ChatOutcome) -> None:
        # Stored as is: the AI service hands a result out finished and never changes it after
        # ``put``; each hit gets its own copy (the hit path then marks it).
        size = ENTRY_OVERHEAD + result.text_size()
        max_bytes = self._max_bytes
        if max_bytes is not None and size > max_bytes:
            return  # alone over the bound: caching it would evict everything, then itself
        old = self._items.get(key)
        if old is not None:
            self.bytes -= old[2]
        self._items[key] = (time.monotonic() + self._ttl, result, size)
        self._items.move_to_end(key)
        self.bytes += size
        while len(self._items) > self._max or (max_bytes is not None and self.bytes > max_bytes):
            self.bytes -= self._items.popitem(last=False)[1][2]


def _snapshot(result: ChatOutcome) -> ChatOutcome:
    """A copy whose mutable parts are its own (tool calls are never changed in place; a deepcopy
    cost a tenth of a cached request's CPU)."""
    out = copy.copy(result)
    out.tool_calls, out.attempts, out.usage = list(result.tool_calls), [], copy.copy(result.usage)
    return out


def cache_key(model: str, request: ChatRequest) -> str:
    """sha256 of the request as sent (model, messages, parameters), stream flags left out."""
    data = request.model_dump(mode="json", exclude_none=True, exclude={"model", "stream", "stream_options", "user"})
    return hashlib.sha256(orjson.dumps({"model": model, **data}, option=orjson.OPT_SORT_KEYS)).hexdigest()
