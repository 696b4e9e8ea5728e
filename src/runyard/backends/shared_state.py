"""Where a gateway's shared state lives, chosen once from the config: in this process (no
``[redis]``, the embedded default) or on Redis (several gateways and workers).

:func:`shared_state` builds the collaborators the gateway passes to its services; each has the
same interface in both forms, so the services do not know which they got.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .limits import InProcessLimitBackend, LimitBackend
from .redis_conn import RedisHandle, connect
from .redis_lock import LocalLocks, Locks

if TYPE_CHECKING:
    from ..config import RunyardConfig
    from ..services.cache import AsyncResponseCache
    from ..services.idempotency import Idempotency
    from .redis_bus import RedisTaskBus
    from .redis_nonces import RedisNonceGuard


@dataclass(slots=True)
class SharedState:
    """``redis`` is None in-process; then ``cache``, ``nonces`` and ``bus`` are None too (the
    services keep their in-process ones: MemoryCache, the per-process nonce map, TaskBus)."""

    redis: RedisHandle | None
    limits: LimitBackend
    idempotency: Idempotency
    locks: Locks
    cache: AsyncResponseCache | None = None
    nonces: RedisNonceGuard | None = None
    bus: RedisTaskBus | None = None

    async def start(self) -> None:
        if self.bus is not None:
            await self.bus.start()

    async def aclose(self) -> None:
        if self.bus is not None:
            await self.bus.aclose()
        await self.limits.aclose()
        if self.redis is not None:
            await self.redis.aclose()


def shared_state(config: RunyardConfig) -> SharedState:
    from ..services.idempotency import IdempotencyCache

    ttl_s = config.server.idempotency_ttl_s
    if config.redis is None:
        return SharedState(
            None,
            InProcessLimitBackend(horizon_s=config.limits.window_s),
            IdempotencyCache(ttl_s, config.server.idempotency_max_bytes),
            LocalLocks(),
        )
    from .redis_bus import RedisTaskBus
    from .redis_cache import RedisResponseCache
    from .redis_idempotency import RedisIdempotency
    from .redis_limits import RedisLimitBackend
    from .redis_lock import RedisLocks
    from .redis_nonces import RedisNonceGuard

    redis = connect(config.redis)
    return SharedState(
        redis,
        RedisLimitBackend(redis, horizon_s=config.limits.window_s),
        RedisIdempotency(redis, ttl_s),
        RedisLocks(redis),
        RedisResponseCache(redis, config.cache.ttl_s, config.cache.max_entries, config.cache.max_bytes),
        RedisNonceGuard(redis),
        RedisTaskBus(redis),
    )
