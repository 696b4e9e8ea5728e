"""The Portal: a private event loop in a thread that the sync client drives."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from runyard.client import Portal

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def portal() -> Iterator[Portal]:
    p = Portal()
    try:
        yield p
    finally:
        p.close()


def test_call_runs_on_the_portal_thread(portal: Portal) -> None:
    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert portal.call(where()) == "runyard-portal"
    assert portal.call(where()) == "runyard-portal"  # the same loop, reused


def test_call_reraises_the_same_exception(portal: Portal) -> None:
    err = KeyError("x")

    async def fail() -> None:
        raise err

    with pytest.raises(KeyError) as info:
        portal.call(fail())
    assert info.value is err


def test_state_lives_on_one_loop(portal: Portal) -> None:
    async def make() -> asyncio.Event:
        return asyncio.Event()

    event = portal.call(make())

    async def use() -> bool:
        event.set()
        await event.wait()
        return True

    assert portal.call(use())


def test_iterate_pulls_one_item_at_a_time(portal: Portal) -> None:
    produced: list[int] = []

    async def gen() -> AsyncIterator[int]:
        for i in range(3):
            produced.append(i)
            yield i

    it = portal.iterate(gen())
    assert next(it) == 0
    assert produced == [0]
    assert next(it) == 1
    assert produced == [0, 1]
    assert list(it) == [2]


def test_iterate_propagates_errors(portal: Portal) -> None:
    async def gen() -> AsyncIterator[int]:
        yield 1
        raise ValueError("bad item")

    it = portal.iterate(gen())
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad item"):
        next(it)


def test_closing_the_iterator_early_closes_the_async_source(portal: Portal) -> None:
    closed: list[str] = []

    async def gen() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            closed.append(threading.current_thread().name)

    it = portal.iterate(gen())
    assert next(it) == 0
    it.close()
    assert closed == ["runyard-portal"]


def test_close_stops_the_loop_and_joins_the_thread() -> None:
    p = Portal()
    thread = p._thread
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.run_coroutine_threadsafe(forever(), p.loop)
    time.sleep(0.05)
    p.close()
    assert not thread.is_alive()
    assert cancelled.is_set()
    assert p.loop.is_closed()
    p.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        p.call(asyncio.sleep(0))


def test_call_from_inside_the_portal_is_refused(portal: Portal) -> None:
    async def nested() -> None:
        portal.call(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="deadlock"):
        portal.call(nested())


def test_portal_works_while_the_caller_runs_its_own_loop(portal: Portal) -> None:
    async def caller() -> int:
        async def on_portal() -> int:
            await asyncio.sleep(0.01)
            return 42

        return portal.call(on_portal())

    assert asyncio.run(caller()) == 42
