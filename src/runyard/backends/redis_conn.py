"""The Redis connection every shared-state backend uses, and its key prefix (``[redis]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import RedisConfig
    from .redis_pipe import PipelinedRedis


@dataclass(frozen=True, slots=True)
class RedisHandle:
    """A ``redis.asyncio.Redis`` client plus the prefix that namespaces this deployment's keys;
    ``pipe``: the hot path's commands (admission, cache, usage) on one pipelined connection."""

    client: Any  # redis.asyncio.Redis (decode_responses=False: values are bytes)
    prefix: str
    pipe: PipelinedRedis

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def aclose(self) -> None:
        await self.pipe.aclose()
        await self.client.aclose()


def connect(config: RedisConfig, *, max_connections: int = 256, pool_timeout_s: float = 10.0) -> RedisHandle:
    """A pooled async client (hiredis parses replies when installed); connects lazily. A command
    finding all ``max_connections`` in use waits up to ``pool_timeout_s`` for one instead of failing."""
    import redis.asyncio as aioredis

    from .redis_pipe import PipelinedRedis

    pool = aioredis.BlockingConnectionPool.from_url(
        config.url,
        max_connections=max_connections,
        timeout=pool_timeout_s,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return RedisHandle(aioredis.Redis.from_pool(pool), config.prefix, PipelinedRedis(config.url))
