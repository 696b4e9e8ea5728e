"""Limits on a real Redis: two gateway replicas (two LimitServices, each with its own connection)
sharing one Redis admit exactly ``limit`` requests between them; tokens and spend are shared
counters, seeded from the store once; a spend cap's reservations (both backends)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from runyard.backends.limits import ADMITTED, OVER_SPEND, SPEND_PENDING, Admission, InProcessLimitBackend, LimitBackend
from runyard.backends.redis_conn import connect
from runyard.backends.redis_leases import LEASE_S
from runyard.backends.redis_limits import RedisLimitBackend
from runyard.backends.store import Store
from runyard.config import LimitsConfig, RedisConfig
from runyard.errors import RateLimitError, UsageLimitError
from runyard.services.limits import SYNC, LimitService
from support.redis_proxy import ReplyDropper, RoundTripCounter
from support.scaleout import redis_url
from support.store_rows import inference_row


@pytest.fixture
async def replicas(redis_prefix: str) -> AsyncIterator[list[LimitService]]:
    config = LimitsConfig(window_s=60)
    services = [
        LimitService(config, None, RedisLimitBackend(connect(RedisConfig(url=redis_url(), prefix=redis_prefix))))
        for _ in range(2)
    ]
    yield services
    for s in services:
        await s.aclose()
        await s.backend.redis.aclose()  # type: ignore[attr-defined]


async def _admitted(service: LimitService, policy: object, n: int) -> int:
    allowed = 0
    for _ in range(n):
        try:
            await service.check(policy, SYNC)  # type: ignore[arg-type]
            allowed += 1
        except RateLimitError as err:
            assert err.code == "RATE_LIMIT_EXCEEDED"
            assert err.retry_after is not None and 0 < err.retry_after <= 60 / 7 + 0.5
    return allowed


async def test_two_replicas_share_one_bucket_exactly(replicas: list[LimitService]) -> None:
    a, b = replicas
    policy = a.policy("key-1", {"rpm_sync": 7})
    results = await asyncio.gather(*(_admitted(s, policy, 10) for s in (a, b, a, b)))
    assert sum(results) == 7  # 40 attempts across both replicas, exactly the limit admitted
    headers = dict(await b.check(b.policy("key-2", {"rpm_sync": 7}), SYNC))
    assert headers[b"x-ratelimit-remaining"] == b"6"  # another key has its own bucket


async def test_tokens_and_spend_are_shared_and_seeded_once(replicas: list[LimitService]) -> None:
    a, b = replicas
    policy = a.policy("key-t", {"tpm": 100, "spend_limit": 1.0})
    await a.backend.seed_usage("key-t", "month", 10, 0.25)
    await b.backend.seed_usage("key-t", "month", 10, 0.25)  # a second replica's seed is ignored
    a._seeded.add("key-t")
    b._seeded.add("key-t")
    assert (await b.backend.get_usage("key-t", "month"))[:2] == (10, 0.25)
    usage = SimpleNamespace(input_tokens=60, output_tokens=50)
    a.observe(SimpleNamespace(api_key_id="key-t"), SimpleNamespace(usage=usage, cost=0.5, cache_hit=False))
    await a.backend.flush()  # type: ignore[attr-defined]
    with pytest.raises(RateLimitError) as err:  # 110 tokens in the window, seen from the other replica
        await b.check(policy, SYNC)
    assert "110 of 100 tokens" in str(err.value)
    tokens, cost, _ = await b.backend.get_usage("key-t", "month")
    assert (tokens, cost) == (120, 0.75)
    spender = b.policy("key-t", {"spend_limit": 0.7})
    with pytest.raises(UsageLimitError) as spent:
        await b.check(spender, SYNC)
    assert spent.value.code == "USAGE_LIMIT_EXCEEDED"


@pytest.mark.parametrize("start", ["midnight", "new spend cap"])
async def test_a_seed_after_usage_was_added_does_not_count_it_twice(replicas: list[LimitService], start: str) -> None:
    """Replica A has counted today's spend on Redis (it seeded the key yesterday, or the key had no
    cap when it spent); replica B starts and seeds today from the store, whose totals already hold
    A's inferences: the counters are raised to them, not added to."""
    a, b = replicas
    for _ in range(4):
        a.backend.add_usage("key-s", 25, 1.25)  # $5 spent today, recorded in the store as well
    await a.backend.flush()  # type: ignore[attr-defined]
    await b.backend.seed_usage("key-s", "day", 100, 5.0, largest=1.25)
    assert (await a.backend.get_usage("key-s", "day"))[:2] == (100, 5.0)
    b._seeded.add("key-s")
    await b.check(b.policy("key-s", {"spend_limit": 8.0, "period": "day"}), SYNC)  # $5 of $8: admitted
    await b.backend.seed_usage("key-s", "day", 120, 6.0)  # a later seed that knows more raises them
    assert (await a.backend.get_usage("key-s", "day"))[:2] == (120, 6.0)


async def test_usage_whose_reply_was_lost_is_counted_once(redis_prefix: str) -> None:
    """The usage flush ran on Redis but its reply never came back (the connection dropped): the
    next flush sends it again and Redis skips it, so the spend is counted once, and what was added
    since goes with the next call."""
    dropper = ReplyDropper(redis_url()).start()
    backend = RedisLimitBackend(connect(RedisConfig(url=dropper.url, prefix=redis_prefix)))
    try:
        backend.add_usage("lost", 10, 1.0)
        dropper.arm(b"EVALSHA")
        await backend.flush()  # ran on Redis; the reply was dropped: kept to send again
        assert dropper.dropped == 1
        backend.add_usage("lost", 5, 0.5)
        await backend.flush()
        assert (await backend.get_usage("lost", "day"))[:2] == (15, 1.5)
    finally:
        await backend.aclose()
        await backend.redis.aclose()
        dropper.stop()


async def test_peek_does_not_consume(replicas: list[LimitService]) -> None:
    a, _ = replicas
    for _ in range(3):
        allowed, remaining, _reset = await a.backend.hit("peek", 2, 60.0, 0)
        assert allowed and remaining == 2
    assert (await a.backend.hit("peek", 2, 60.0))[:2] == (True, 1)


@pytest.fixture(params=["in-process", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[LimitBackend]:
    if request.param == "in-process":
        yield InProcessLimitBackend()
        return
    prefix = request.getfixturevalue("redis_prefix")
    redis = connect(RedisConfig(url=redis_url(), prefix=prefix))
    shared = RedisLimitBackend(redis)
    yield shared
    await shared.aclose()
    await redis.aclose()


async def _settled(backend: LimitBackend) -> None:
    if isinstance(backend, RedisLimitBackend):
        await backend.drain()


async def test_a_spend_cap_admits_requests_in_flight_only_while_they_fit(backend: LimitBackend) -> None:
    """Each request admitted under a spend cap holds a reservation until it ends: while the spend so
    far plus the largest single cost for each one in flight could reach the cap, more are refused
    (SPEND_PENDING); so the cap is overshot by one request's cost at most."""

    async def admit() -> Admission:
        return await backend.admit("k", "k:s", None, 60, None, 1.0, "day")

    first = await admit()
    assert first.verdict == ADMITTED and first.reservation is not None
    assert (await admit()).verdict == SPEND_PENDING  # no cost known yet: one at a time
    backend.add_usage("k", 10, 0.3)
    backend.release("k", first.reservation)
    await _settled(backend)
    held = [await admit() for _ in range(4)]  # $0.3 spent, $0.3 a request: 0.3 + 2 x 0.3 < 1 <= 0.3 + 3 x 0.3
    assert [a.verdict for a in held] == [ADMITTED, ADMITTED, ADMITTED, SPEND_PENDING]
    for a in held[:3]:
        backend.add_usage("k", 10, 0.3)
        assert a.reservation is not None
        backend.release("k", a.reservation)
    await _settled(backend)
    over = await admit()  # $1.2 spent: within one request's cost of the cap
    assert over.verdict == OVER_SPEND and over.cost == pytest.approx(1.2) and over.reservation is None
    # a key without a spend cap takes no reservations
    assert (await backend.admit("free", "free:s", 5, 60, None, None, "day")).reservation is None


async def test_a_request_running_past_the_reservation_ttl_keeps_its_reservation(redis_prefix: str) -> None:
    """A reservation lapses ``ttl`` after it was taken only if its gateway stopped renewing it (it
    died): a request on a live gateway running 3x that long still counts, so the other replica
    keeps refusing what would overshoot the cap; once released, the key is free again."""
    handles = [connect(RedisConfig(url=redis_url(), prefix=redis_prefix)) for _ in range(2)]
    a, b = (RedisLimitBackend(h, reservation_ttl_s=1.5) for h in handles)
    try:
        await a.seed_usage("long", "day", 0, 0.0, largest=0.6)  # one request in flight could reach $0.5

        async def admit(backend: RedisLimitBackend) -> Admission:
            return await backend.admit("long", "long:s", None, 60, None, 0.5, "day")

        running = await admit(a)
        assert running.verdict == ADMITTED and running.reservation is not None
        for _ in range(9):  # 4.5 s, three TTLs
            await asyncio.sleep(0.5)
            assert (await admit(b)).verdict == SPEND_PENDING
        a.release("long", running.reservation)
        await a.drain()
        assert (await admit(b)).verdict == ADMITTED
    finally:
        for backend in (a, b):
            await backend.aclose()
            await backend.redis.aclose()


async def test_a_key_with_no_cost_yet_is_estimated_by_the_largest_any_key_spent(backend: LimitBackend) -> None:
    """A new key (or a key in a new period) is not held to one request at a time once any key has
    spent: its requests in flight are counted at the largest single cost seen on any key."""
    seen = await backend.admit("old", "old:s", None, 60, None, 10.0, "day")
    assert seen.reservation is not None
    backend.add_usage("old", 10, 0.25)
    backend.add_usage("old", 10, 0.1)
    backend.release("old", seen.reservation)
    await _settled(backend)
    verdicts = [(await backend.admit("new", "new:s", None, 60, None, 1.0, "day")).verdict for _ in range(5)]
    # $0 spent, estimated $0.25 a request: 0 + 3 x 0.25 < 1 <= 0 + 4 x 0.25
    assert verdicts == [ADMITTED, ADMITTED, ADMITTED, ADMITTED, SPEND_PENDING]


async def test_a_restarted_gateway_estimates_a_key_by_its_largest_cost_in_the_store(
    backend: LimitBackend, tmp_path: Path
) -> None:
    """After a restart a key's first requests are not held to one at a time: seeding reads its
    largest single cost this month from the inferences table with its spend."""
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'seed.db'}")
    await store.start()
    try:
        rows = [inference_row("k", cost=cost) for cost in (0.1, 0.3, 0.2)] + [inference_row("other", cost=5.0)]
        await store.insert_inferences(rows)
        service = LimitService(LimitsConfig(window_s=60), store, backend)
        policy = service.policy("k", {"spend_limit": 2.0})
        states: list[dict[str, Any]] = [{} for _ in range(6)]
        admitted = 0
        for state in states:
            try:
                await service.check(policy, SYNC, state)
                admitted += 1
            except UsageLimitError as err:
                assert err.code == "USAGE_LIMIT_EXCEEDED" and "in flight" in str(err)
                break
        assert admitted == 5  # $0.6 spent, $0.3 a request: 0.6 + 4 x 0.3 < 2 <= 0.6 + 5 x 0.3
        for state in states:
            service.release(state)
    finally:
        await store.aclose()


async def test_the_token_window_is_exact_while_admissions_read_its_kept_sum(redis_prefix: str) -> None:
    """Admissions read the window's token sum kept per slice (``Ss``/``St``), not the slices:
    usage flushed by another replica counts at once, and tokens leave once the window passes."""
    services = [
        LimitService(
            LimitsConfig(window_s=2),
            None,
            RedisLimitBackend(connect(RedisConfig(url=redis_url(), prefix=redis_prefix)), horizon_s=2.0),
        )
        for _ in range(2)
    ]
    a, b = services
    try:
        policy = a.policy("key-w", {"tpm": 100})
        await b.check(policy, SYNC)  # the sum is computed (0) and kept
        for tokens, admitted in ((60, True), (30, True), (20, False)):
            usage = SimpleNamespace(input_tokens=tokens, output_tokens=0)
            a.observe(SimpleNamespace(api_key_id="key-w"), SimpleNamespace(usage=usage, cost=0.0, cache_hit=False))
            await a.backend.flush()  # type: ignore[attr-defined]
            if admitted:
                await b.check(policy, SYNC)
            else:
                with pytest.raises(RateLimitError) as err:
                    await b.check(policy, SYNC)
                assert "110 of 100 tokens" in str(err.value)
                assert err.value.retry_after is not None and 0 < err.value.retry_after <= 2.0
        backend = b.backend
        assert isinstance(backend, RedisLimitBackend)
        kept = await backend.redis.client.hget(backend.redis.key("tw", "key-w"), "St")
        assert int(kept) == 110
        await asyncio.sleep(2.2)  # the window has passed: its tokens no longer count
        await b.check(policy, SYNC)
        assert int(await backend.redis.client.hget(backend.redis.key("tw", "key-w"), "St")) == 0
    finally:
        for s in services:
            await s.aclose()
            await s.backend.redis.aclose()  # type: ignore[attr-defined]


async def test_a_busy_caller_is_admitted_from_leases_and_the_bucket_stays_exact(redis_prefix: str) -> None:
    """Leases (backends/redis_leases.py): a key admitted hundreds of times a second takes its
    requests (and spend reservations) from Redis a batch at a time, so far fewer round trips than
    admissions; every admission still charged the shared bucket and holds its own reservation,
    and what the last lease did not use goes back when it lapses."""
    counter = RoundTripCounter(redis_url()).start()
    a = RedisLimitBackend(connect(RedisConfig(url=counter.url, prefix=redis_prefix)))
    b = RedisLimitBackend(connect(RedisConfig(url=redis_url(), prefix=redis_prefix)))

    async def admit(backend: RedisLimitBackend) -> Admission:
        return await backend.admit("busy", "busy:s", 600, 60, None, 1000.0, "day")

    try:
        await a.seed_usage("busy", "day", 0, 0.001, largest=0.001)  # a cost known: room to lease
        started = time.monotonic()
        before = counter.commands.get("EVALSHA", 0)
        got: list[Admission] = []
        for _ in range(15):
            got += await asyncio.gather(*(admit(a) for _ in range(20)))
        calls = counter.commands.get("EVALSHA", 0) - before
        assert [x.verdict for x in got] == [ADMITTED] * 300
        assert calls <= 300 / 4, calls  # one script call a request before leases
        reservations = {x.reservation for x in got}
        assert len(reservations) == 300 and None not in reservations  # each holds its own
        for reservation in reservations:
            a.add_usage("busy", 1, 0.001)
            a.release("busy", str(reservation))
        await asyncio.sleep(LEASE_S + 0.1)  # the last lease lapses: its spares go back
        await a.drain()
        await a.redis.pipe.flush()
        assert await b.redis.client.zcard(b.redis.key("fl", "busy")) == 0  # no reservation left behind
        rest = [await admit(b) for _ in range(400)]  # the other replica: what the 300 left of 600
        admitted = sum(x.verdict == ADMITTED for x in rest)
        refill = 600 / 60 * (time.monotonic() - started) + 1
        assert 300 <= admitted <= 300 + refill, (admitted, refill)
    finally:
        await a.redis.aclose()
        await b.redis.aclose()
        counter.stop()


async def test_two_busy_replicas_with_leases_never_admit_more_than_the_bucket(redis_prefix: str) -> None:
    a, b = (RedisLimitBackend(connect(RedisConfig(url=redis_url(), prefix=redis_prefix))) for _ in range(2))

    async def burst(backend: RedisLimitBackend) -> int:
        got = await asyncio.gather(*(backend.admit("both", "both:s", 200, 60, None, None, "day") for _ in range(20)))
        return sum(x.verdict == ADMITTED for x in got)

    try:
        started = time.monotonic()
        admitted = 0
        for _ in range(20):  # 800 attempts, both replicas at once
            admitted += sum(await asyncio.gather(burst(a), burst(b)))
        refill = 200 / 60 * (time.monotonic() - started) + 1
        assert admitted <= 200 + refill, admitted  # leases take from the one bucket: never more
        assert admitted >= 200 - 2 * 64, admitted  # at most each replica's last lease unused
    finally:
        await a.redis.aclose()
        await b.redis.aclose()
