"""Redis round trips per chat completion with limits and the shared cache on, counted by a relay
in front of the real Redis (``support.redis_proxy``): the admission and the cache lookup go
in one script call, and the writes nobody waits on (the usage, the cache entry) go out together
after the answer: 2 round trips a request, hit or miss. Before the lookup joined the admission:
4 and 5; before the writes lingered (backends/redis_pipe.py), a miss cost 3."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.gateway import GatewayProcess, keyed_config
from support.redis_proxy import RoundTripCounter
from support.scaleout import redis_url

KEY = "ry_round_trips"
N = 20


@pytest.fixture
def counted(tmp_path: Path, redis_prefix: str) -> Iterator[tuple[GatewayProcess, RoundTripCounter]]:
    counter = RoundTripCounter(redis_url()).start()
    config = keyed_config(
        tmp_path,
        KEY,
        limits={"rpm_sync": 100000, "spend_limit": 1000.0},
        cache={"strategy": "runyard"},
        redis={"url": counter.url, "prefix": redis_prefix},
        models={"priced": {"routes": ["dummy::echo"], "price": {"input": 1.0, "output": 1.0}}},
    )
    gateway = GatewayProcess(config, args=["--no-worker"]).start()
    try:
        yield gateway, counter
    finally:
        gateway.stop()
        counter.stop()


def _round_trips_per_request(gateway: GatewayProcess, counter: RoundTripCounter, texts: list[str]) -> float:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as client:
        time.sleep(0.3)  # the previous requests' usage is flushed
        before = counter.round_trips
        for text in texts:
            body = {"model": "priced", "messages": [{"role": "user", "content": text}]}
            r = client.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            assert r.headers["x-ratelimit-limit"] == "100000"
            time.sleep(0.05)  # each request's usage flush on its own (under load they coalesce)
        time.sleep(0.3)
        return (counter.round_trips - before) / len(texts)


def test_limits_and_the_cache_lookup_cost_one_round_trip(counted: tuple[GatewayProcess, RoundTripCounter]) -> None:
    gateway, counter = counted
    _round_trips_per_request(gateway, counter, ["warm up", "same"])  # connections made, scripts loaded
    misses = _round_trips_per_request(gateway, counter, [f"new {i}" for i in range(N)])
    hits = _round_trips_per_request(gateway, counter, ["same"] * N)
    assert hits == 2.0, hits  # admission + lookup (one pipeline), then the usage
    # the cache write lingers up to 2 ms for the usage to go out with it: on a busy machine a
    # request now and then sends them apart (3 round trips before the writes lingered)
    assert 2.0 <= misses <= 2.25, misses
