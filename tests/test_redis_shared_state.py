"""Shared state on a real Redis, each piece held by two "replicas" (separate connections, as two
gateway processes would have): response cache, idempotency keys, replay nonces, the task bus and
leased locks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from runyard.backends.redis_bus import RedisTaskBus
from runyard.backends.redis_cache import RedisResponseCache
from runyard.backends.redis_conn import RedisHandle, connect
from runyard.backends.redis_idempotency import RedisIdempotency
from runyard.backends.redis_lock import RedisLocks
from runyard.backends.redis_nonces import RedisNonceGuard
from runyard.config import RedisConfig
from runyard.errors import ConflictError
from runyard.inference import Attempt, ChatOutcome, ModelToolCall, TokenUsage
from support.redis_proxy import CutLink, SlowLink
from support.scaleout import redis_url


@pytest.fixture
async def pair(redis_prefix: str) -> AsyncIterator[tuple[RedisHandle, RedisHandle]]:
    handles = (connect(RedisConfig(url=redis_url(), prefix=redis_prefix)) for _ in range(2))
    a, b = handles
    yield a, b
    await a.aclose()
    await b.aclose()


async def test_response_cache_is_shared_with_ttl_and_bound(pair: tuple[RedisHandle, RedisHandle]) -> None:
    a, b = (RedisResponseCache(h, ttl_s=0.5, max_entries=3) for h in pair)
    result = ChatOutcome(
        content="hi",
        tool_calls=[ModelToolCall(id="c1", name="f", arguments='{"x": 1}')],
        usage=TokenUsage(input_tokens=3, output_tokens=1),
        model="m",
        provider="p",
        attempts=[Attempt(provider="p", model="m")],
        cost=0.01,
    )

    async def put(key: str) -> None:
        """A put is queued: sent here (and any trim it started), so the other replica sees it."""
        await a.put(key, result)
        await pair[0].pipe.flush()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await pair[0].pipe.flush()

    await put("k0")
    got = await b.get("k0")
    assert got is not None and got.content == "hi" and got.tool_calls == result.tool_calls
    assert got.usage == result.usage and got.attempts == []
    for i in range(1, 4):
        await put(f"k{i}")
    assert await b.get("k0") is None  # the oldest of four made room (max_entries=3)
    assert await b.get("k3") is not None
    index = pair[0].key("cache-index")
    assert await pair[0].client.zcard(index) <= 3
    for i in range(4, 40):
        await put(f"k{i}")
        assert await pair[0].client.zcard(index) <= 3  # never over the bound
    assert await b.get("k39") is not None
    await asyncio.sleep(0.6)
    assert await b.get("k3") is None  # expired
    assert b.misses == 2 and b.hits == 3


async def test_response_cache_is_bounded_in_bytes_across_replicas(pair: tuple[RedisHandle, RedisHandle]) -> None:
    """Answers put by either replica count toward one ``max_bytes``: the oldest go first, the
    running total stays the stored size, and an answer alone over the bound is not cached (nor
    does it push the others out)."""
    caches = [RedisResponseCache(h, ttl_s=60, max_entries=1_000, max_bytes=5_000) for h in pair]
    sizes, total = pair[0].key("cache-sizes"), pair[0].key("cache-bytes")

    async def put(i: int, text: str) -> None:
        handle = pair[i % 2]
        await caches[i % 2].put(f"b{i}", ChatOutcome(content=text, model="m", provider="p"))
        await handle.pipe.flush()
        await asyncio.sleep(0)
        await handle.pipe.flush()

    async def stored() -> int:
        keys = [key.decode() for key in await pair[0].client.hkeys(sizes)]
        return sum([await pair[0].client.strlen(key) for key in keys])

    for i in range(20):
        await put(i, f"answer {i} " + "x" * 900)
        assert await stored() <= 5_000
        assert int(await pair[0].client.get(total)) <= 5_000
    assert await caches[1].get("b19") is not None
    assert await caches[1].get("b0") is None  # among the oldest, gone for the newer
    kept = await stored()
    assert 3_000 < kept == int(await pair[0].client.get(total))
    await put(20, "y" * 6_000)
    assert await caches[0].get("b20") is None
    assert await stored() == kept and await caches[0].get("b19") is not None
    await put(19, "answer 19 " + "x" * 900)  # the same answer again (from the other replica): counted once
    await put(19, "answer 19 " + "x" * 900)
    assert int(await pair[0].client.get(total)) == kept == await stored()


async def test_a_trim_of_many_thousand_entries_goes_through(pair: tuple[RedisHandle, RedisHandle]) -> None:
    """A cache far over its bound (its ``max_entries`` lowered from 20,000 to 10 in a redeploy)
    trims in one go: Lua's ``unpack`` of more than ~8,000 members at once would fail."""
    client, index, sizes = pair[0].client, pair[0].key("cache-index"), pair[0].key("cache-sizes")
    now_ms = int(time.time() * 1000)
    members = [pair[0].key("cache", f"old-{i}") for i in range(20_000)]
    await client.zadd(index, {m: now_ms - 20_000 + i for i, m in enumerate(members)})
    await client.hset(sizes, mapping=dict.fromkeys(members, 10))
    await client.set(pair[0].key("cache-bytes"), 10 * len(members))
    cache = RedisResponseCache(pair[0], ttl_s=60, max_entries=10)
    await cache.put("new", ChatOutcome(content="hi", model="m", provider="p"))
    await pair[0].pipe.flush()
    await asyncio.sleep(0)
    await pair[0].pipe.flush()
    assert await client.zcard(index) == 9 and await client.hlen(sizes) == 9
    assert await cache.get("new") is not None


async def test_one_idempotency_key_on_two_replicas_runs_once(pair: tuple[RedisHandle, RedisHandle]) -> None:
    a, b = (RedisIdempotency(h, ttl_s=60) for h in pair)
    calls = 0

    async def upstream() -> tuple[int, bytes]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)  # the other replica arrives while this runs
        return 200, b'{"id": "answer-1"}'

    answers = await asyncio.gather(*(r.run("key-1", b"body", upstream) for r in (a, b, a, b)))
    assert calls == 1
    assert set(answers) == {(200, b'{"id": "answer-1"}')}
    assert await b.run("key-1", b"body", upstream) == (200, b'{"id": "answer-1"}')  # a later retry
    assert calls == 1
    with pytest.raises(ConflictError) as err:
        await a.run("key-1", b"other body", upstream)
    assert err.value.code == "idempotency_key_reused"


async def test_idempotency_answer_stored_between_a_look_and_a_claim_is_used(redis_prefix: str) -> None:
    """The first caller may store its answer and let go of the key between a waiter's look for
    that answer and its try to take the key: the waiter must get the answer, not run again. The
    waiter is on a slow link (each request 15 ms on its way), so the first caller finishes at
    every point of the waiter's polling across the 32 keys."""
    link = SlowLink(redis_url(), delay_s=0.015).start()
    near, far = (connect(RedisConfig(url=url, prefix=redis_prefix)) for url in (redis_url(), link.url))
    first, waiter = RedisIdempotency(near, ttl_s=60), RedisIdempotency(far, ttl_s=60, poll_s=0.001)
    calls: dict[str, int] = {}

    async def both(i: int) -> None:
        key, started = f"race-{i}", asyncio.Event()

        async def upstream() -> tuple[int, bytes]:
            calls[key] = calls.get(key, 0) + 1
            started.set()
            await asyncio.sleep(0.02 + 0.007 * i)
            return 200, key.encode()

        running = asyncio.create_task(first.run(key, b"body", upstream))
        await started.wait()
        assert await waiter.run(key, b"body", upstream) == (200, key.encode())
        assert await running == (200, key.encode())

    try:
        await asyncio.gather(*(both(i) for i in range(32)))
    finally:
        await near.aclose()
        await far.aclose()
        link.stop()
    assert {key: n for key, n in calls.items() if n != 1} == {}


async def test_a_burst_beyond_the_pool_waits_for_a_connection(redis_prefix: str) -> None:
    """More commands at once than the client has connections: they queue for one, none fails."""
    link = SlowLink(redis_url(), delay_s=0.05).start()
    handle = connect(RedisConfig(url=link.url, prefix=redis_prefix), max_connections=2)
    try:
        answers = await asyncio.gather(*(handle.client.get(handle.key("burst", str(i))) for i in range(8)))
    finally:
        await handle.aclose()
        link.stop()
    assert answers == [None] * 8


async def test_idempotency_failure_frees_the_key(pair: tuple[RedisHandle, RedisHandle]) -> None:
    a, b = (RedisIdempotency(h, ttl_s=60) for h in pair)
    outcomes = [RuntimeError("upstream down"), (200, b"{}")]

    async def upstream() -> tuple[int, bytes]:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with pytest.raises(RuntimeError):
        await a.run("key-2", b"body", upstream)
    assert await b.run("key-2", b"body", upstream) == (200, b"{}")  # tried again, not stuck


async def test_nonce_is_accepted_once_across_replicas(pair: tuple[RedisHandle, RedisHandle]) -> None:
    a, b = (RedisNonceGuard(h) for h in pair)
    results = await asyncio.gather(*(g.first_use("app:n1", 60) for g in (a, b, a, b)))
    assert sorted(results) == [False, False, False, True]
    assert await b.first_use("app:n2", 0.1)
    await asyncio.sleep(0.2)
    assert await a.first_use("app:n2", 0.1)  # its window is over


async def test_task_bus_wakes_the_other_process(pair: tuple[RedisHandle, RedisHandle]) -> None:
    gateway, worker = (RedisTaskBus(h) for h in pair)
    await gateway.start()
    await worker.start()
    try:
        with gateway.watch("t1") as changed:
            worker.notify("t1")
            await asyncio.wait_for(changed.wait(), 5)
        signal = worker.pool_signal("shared")
        gateway.pool_signal("shared").set()  # a submission on the gateway wakes the worker's dispatcher
        await asyncio.wait_for(signal.wait(), 5)
        cancelled, ended = asyncio.Event(), asyncio.Event()
        worker.cancel_hooks["t2"] = cancelled.set
        hook = gateway.cancel_hooks.get("t2")
        assert hook is not None
        hook()  # the task runs on the worker: the cancel travels
        sessions: list[str] = []
        worker.session_hooks.append(lambda s: (sessions.append(s), ended.set()))
        for h in list(gateway.session_hooks):
            h("s1")
        await asyncio.wait_for(cancelled.wait(), 5)
        await asyncio.wait_for(ended.wait(), 5)
        assert sessions == ["s1"]
    finally:
        await gateway.aclose()
        await worker.aclose()


async def test_locks_are_exclusive_across_replicas_and_lease_out(pair: tuple[RedisHandle, RedisHandle]) -> None:
    a, b = (RedisLocks(h, lease_s=0.3) for h in pair)
    inside = 0
    most = 0

    async def turn(locks: RedisLocks) -> None:
        nonlocal inside, most
        async with locks.hold("chat-1"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.05)
            inside -= 1

    await asyncio.gather(*(turn(x) for x in (a, b, a, b, a, b)))
    assert most == 1
    async with a.hold("chat-2"):
        await asyncio.sleep(0.5)  # held past the lease: renewed, so still exclusive
        assert not await pair[1].client.set(pair[1].key("lock", "chat-2"), b"x", nx=True, px=1000)
    # a holder that died (no release, no renewal) frees the name after the lease
    await pair[0].client.set(pair[0].key("lock", "chat-3"), b"dead", px=300)
    started = time.monotonic()
    async with b.hold("chat-3"):
        assert 0.1 < time.monotonic() - started < 2


async def test_a_lock_outlives_a_redis_blip_shorter_than_its_lease(redis_prefix: str) -> None:
    """The holder's link to Redis is down for 1 s of a 1.5 s lease: its renewals are tried again
    until one gets through, so the other replica still waits for the release, and the holder's
    own exit raises nothing."""
    link = CutLink(redis_url())
    link.start()
    handles = [connect(RedisConfig(url=url, prefix=redis_prefix)) for url in (link.url, redis_url())]
    holder, other = RedisLocks(handles[0], lease_s=1.5), RedisLocks(handles[1], lease_s=1.5, poll_s=0.05)
    got_it: list[float] = []

    async def take() -> None:
        async with other.hold("chat:blip"):
            got_it.append(time.monotonic())

    try:
        async with holder.hold("chat:blip"):
            link.cut()
            await asyncio.sleep(1.0)
            link.mend()
            waiting = asyncio.create_task(take())
            await asyncio.sleep(1.5)  # past the lease the holder took at the start
            assert got_it == []
            released = time.monotonic()
        await asyncio.wait_for(waiting, 5)
        assert got_it and got_it[0] >= released
    finally:
        for handle in handles:
            await handle.aclose()
        link.stop()


async def test_shared_state_follows_the_config(redis_prefix: str) -> None:
    from runyard.backends.limits import InProcessLimitBackend
    from runyard.backends.redis_limits import RedisLimitBackend
    from runyard.backends.redis_lock import LocalLocks
    from runyard.backends.shared_state import shared_state
    from runyard.config import parse_config
    from runyard.services.idempotency import IdempotencyCache

    local = shared_state(parse_config({"limits": {"window_s": 30}}).model_copy(update={"redis": None}))
    assert isinstance(local.limits, InProcessLimitBackend) and local.limits.horizon_s == 30
    assert isinstance(local.idempotency, IdempotencyCache) and isinstance(local.locks, LocalLocks)
    assert local.redis is None and local.bus is None and local.cache is None
    await local.aclose()
    shared = shared_state(parse_config({"redis": {"url": redis_url(), "prefix": redis_prefix}}))
    await shared.start()
    try:
        assert isinstance(shared.limits, RedisLimitBackend) and isinstance(shared.idempotency, RedisIdempotency)
        assert shared.redis is not None and await shared.redis.ping()
        assert shared.bus is not None and shared.bus.channel == redis_prefix + "bus"
        assert shared.nonces is not None and await shared.nonces.first_use("n", 10)
    finally:
        await shared.aclose()
