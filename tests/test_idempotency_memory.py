"""The in-process idempotency cache keeps its answers within a byte budget, each in an allocation
of its own size (orjson's results otherwise hold ~4 KB each: 50,000 keys were ~200 MB)."""

from __future__ import annotations

import tracemalloc

import orjson

from runyard.services.idempotency import IdempotencyCache


async def test_answers_past_the_byte_budget_are_forgotten_oldest_first() -> None:
    cache = IdempotencyCache(ttl_s=3600, max_bytes=10_000)
    runs: list[str] = []

    def produce(key: str):
        async def answer() -> tuple[int, bytes]:
            runs.append(key)
            return 200, b"x" * 1_000

        return answer

    for i in range(30):
        await cache.run(f"k{i}", b"fp", produce(f"k{i}"))
    assert await cache.run("k29", b"fp", produce("again-k29")) == (200, b"x" * 1_000)  # kept: not run
    await cache.run("k0", b"fp", produce("again-k0"))  # forgotten: run again
    assert runs[-1] == "again-k0" and "again-k29" not in runs


async def test_kept_answers_are_the_size_of_their_bodies() -> None:
    cache = IdempotencyCache(ttl_s=3600)
    body = {"content": "y" * 500}

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2_000):

            async def answer() -> tuple[int, bytes]:
                return 200, orjson.dumps(body)

            await cache.run(f"key-{i}", b"fingerprint", answer)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 2_000 * 1_500, grown  # ~4 KB an answer before (the body alone is ~520 bytes)


async def test_an_embedded_gateway_keeps_a_smaller_replay_budget_unless_configured(tmp_path) -> None:
    from runyard.config import EMBEDDED_IDEMPOTENCY_MAX_BYTES, parse_config
    from runyard.server.app import create_app

    def budget(config) -> int:
        """The replay budget of the gateway ``AsyncClient.embedded(config)`` builds."""
        gateway = create_app(config.for_embedded()).state.gateway
        configured: int = gateway.config.server.idempotency_max_bytes
        if isinstance(gateway.idempotency, IdempotencyCache):  # in process (with [redis] keys expire there)
            assert gateway.idempotency.max_bytes == configured
        return configured

    store = {"storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"}}
    default = parse_config(store)
    assert default.server.idempotency_max_bytes == 32 * 1024 * 1024  # `runyard serve`
    assert budget(default) == EMBEDDED_IDEMPOTENCY_MAX_BYTES == 4 * 1024 * 1024
    assert budget(parse_config({**store, "server": {"idempotency_max_bytes": 1_000_000}})) == 1_000_000  # kept
