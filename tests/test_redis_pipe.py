"""The hot path's pipelined Redis connection (backends/redis_pipe.py) against the real test Redis:
one write a loop turn, replies in order, errors per command, scripts loaded when missing, a lost
or silent server failing the commands in flight (never a hang) and the next command reconnecting."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from runyard.backends.redis_pipe import PipelinedRedis, Script
from support.redis_proxy import RoundTripCounter
from support.scaleout import redis_url
from support.tcp_relay import RelayServer


@pytest.fixture
async def counted(redis_prefix: str) -> AsyncIterator[tuple[PipelinedRedis, RoundTripCounter]]:
    counter = RoundTripCounter(redis_url()).start()
    pipe = PipelinedRedis(counter.url, timeout_s=5)
    yield pipe, counter
    await pipe.aclose()
    counter.stop()


async def test_one_loop_turn_s_commands_are_one_round_trip_with_replies_in_order(
    counted: tuple[PipelinedRedis, RoundTripCounter], redis_prefix: str
) -> None:
    pipe, counter = counted
    assert await pipe.execute("PING") == b"PONG"
    before = counter.round_trips
    keys = [f"{redis_prefix}pipe:{i}" for i in range(50)]
    await asyncio.gather(*(pipe.execute("SET", key, i) for i, key in enumerate(keys)))
    values = await asyncio.gather(*(pipe.execute("GET", key) for key in keys), pipe.execute("GET", keys[0] + "x"))
    assert values == [str(i).encode() for i in range(50)] + [None]
    assert counter.round_trips - before == 2  # fifty SETs in one write, then fifty-one GETs in one
    assert await pipe.execute("HSET", keys[0] + "h", "f", 2.5) == 1
    assert await pipe.execute("HGETALL", keys[0] + "h") == [b"f", b"2.5"]


async def test_an_error_reply_fails_its_command_only(counted: tuple[PipelinedRedis, RoundTripCounter]) -> None:
    pipe, _ = counted
    results = await asyncio.gather(
        pipe.execute("PING"), pipe.execute("NOSUCHCOMMAND"), pipe.execute("ECHO", "x"), return_exceptions=True
    )
    assert results[0] == b"PONG" and results[2] == b"x"
    assert isinstance(results[1], ResponseError) and "unknown command" in str(results[1]).lower()


async def test_a_script_redis_has_not_got_is_sent_whole_then_by_its_sha(
    counted: tuple[PipelinedRedis, RoundTripCounter], redis_prefix: str
) -> None:
    pipe, counter = counted
    script = Script.of(f"-- {uuid.uuid4().hex}\nreturn {{KEYS[1], ARGV[1]}}")  # new to this Redis
    key = redis_prefix + "script"
    await pipe.execute("PING")
    before = counter.round_trips
    assert await pipe.run_script(script, [key], ["a"]) == [key.encode(), b"a"]
    assert counter.round_trips - before == 2  # NOSCRIPT, then EVAL (which loads it)
    before = counter.round_trips
    assert await pipe.run_script(script, [key], [7]) == [key.encode(), b"7"]
    assert counter.round_trips - before == 1


async def test_a_lost_connection_fails_the_command_in_flight_and_the_next_reconnects(redis_prefix: str) -> None:
    pipe = PipelinedRedis(redis_url(), timeout_s=10)
    admin = aioredis.Redis.from_url(redis_url())
    try:
        first = await pipe.execute("CLIENT", "ID")
        waiting = asyncio.ensure_future(pipe.execute("BLPOP", redis_prefix + "never", 5))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await admin.execute_command("CLIENT", "KILL", "ID", first)
        with pytest.raises(ConnectionError):
            await waiting
        assert time.monotonic() - started < 2
        second = await pipe.execute("CLIENT", "ID")
        assert second != first
    finally:
        await admin.aclose()
        await pipe.aclose()


class _Silent(RelayServer):
    """Accepts and reads, never answers: a hung Redis."""

    def handle(self, client: socket.socket) -> None:
        while client.recv(65536):
            pass


async def test_a_server_that_does_not_answer_times_the_commands_out() -> None:
    server = _Silent().start()
    pipe = PipelinedRedis(f"redis://127.0.0.1:{server.port}/0", timeout_s=0.3)
    try:
        started = time.monotonic()
        results = await asyncio.gather(pipe.execute("PING"), pipe.execute("GET", "k"), return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in results), results
        assert 0.25 < time.monotonic() - started < 2
        with pytest.raises(TimeoutError):  # a fresh connection, timed out again
            await pipe.execute("PING")
    finally:
        await pipe.aclose()
        server.stop()


async def test_nothing_listening_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pipe = PipelinedRedis(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(ConnectionError, match="cannot connect"):
        await pipe.execute("PING")
    await pipe.aclose()


async def test_a_cancelled_caller_leaves_the_replies_in_order(redis_prefix: str) -> None:
    pipe = PipelinedRedis(redis_url())
    try:
        blocked = asyncio.ensure_future(pipe.execute("BLPOP", redis_prefix + "never", 1))
        await asyncio.sleep(0.1)
        blocked.cancel()
        assert await pipe.execute("ECHO", "after") == b"after"  # not BLPOP's nil
    finally:
        await pipe.aclose()


async def test_the_url_s_database_and_credentials_are_used(redis_prefix: str) -> None:
    base = redis_url().rsplit("/", 1)[0]
    pipe = PipelinedRedis(base + "/5")
    other = aioredis.Redis.from_url(base + "/5")
    key = redis_prefix + "db5"
    try:
        await pipe.execute("SET", key, "v", "PX", 60000)
        assert await other.get(key) == b"v"
    finally:
        await other.delete(key)
        await other.aclose()
        await pipe.aclose()
    wrong = PipelinedRedis(base.replace("redis://", "redis://:not-the-password@") + "/0")
    with pytest.raises(ResponseError):  # this Redis has no password: AUTH is refused
        await wrong.execute("PING")
    await wrong.aclose()


def test_one_client_used_from_one_event_loop_after_another() -> None:
    """A CLI runs asyncio.run more than once: the connection of a finished loop is not reused."""
    pipe = PipelinedRedis(redis_url(), timeout_s=5)

    async def ping() -> bytes:
        return await asyncio.wait_for(pipe.execute("PING"), 5)  # type: ignore[no-any-return]

    assert asyncio.run(ping()) == b"PONG"
    assert asyncio.run(ping()) == b"PONG"
    asyncio.run(pipe.aclose())
