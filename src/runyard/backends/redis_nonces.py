"""Replay guard for signed requests (SpeedPix), shared by replicas: each nonce once per window."""

from __future__ import annotations

from .redis_conn import RedisHandle


class RedisNonceGuard:
    """``first_use(nonce, ttl_s)``: True the first time a nonce is seen within ``ttl_s``
    (``SET NX EX``: atomic, so two replicas given one nonce at once accept it once)."""

    def __init__(self, redis: RedisHandle) -> None:
        self.redis = redis

    async def first_use(self, nonce: str, ttl_s: float) -> bool:
        key = self.redis.key("nonce", nonce)
        return bool(await self.redis.client.set(key, b"1", nx=True, px=max(1, int(ttl_s * 1000))))
