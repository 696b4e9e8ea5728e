"""A portal into a private event loop, so the sync client is the async client, driven."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["Portal"]

T = TypeVar("T")


def fast_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where installed, for a portal that runs an embedded gateway: its I/O and each
    thread hand-off cost less there (bench/README.md, "Figures 2026-12-06, second session").
    A client over HTTP keeps asyncio's loop, whose socket states httpx's pool was tested on."""
    try:
        import uvloop
    except ImportError:  # Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Portal:
    """One event loop running forever in a daemon thread.

    ``call`` runs a coroutine there and blocks for its result (exceptions re-raised as-is;
    an interrupt while waiting cancels the coroutine). ``iterate`` pulls an async
    iterator's items one at a time. ``close`` stops the loop and joins the thread.
    """

    def __init__(
        self, name: str = "runyard-portal", loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    ) -> None:
        self._loop = (loop_factory or asyncio.new_event_loop)()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def closed(self) -> bool:
        return self._closed

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal's loop and return its result."""
        if self._closed:
            coro.close()
            raise RuntimeError("portal is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("Portal.call() from the portal's own thread would deadlock")
        # A lock released by the task's done-callback: a lighter hand-off than
        # run_coroutine_threadsafe's concurrent Future and Condition (~30 us a call here).
        done = threading.Lock()
        done.acquire()
        started: list[asyncio.Task[T]] = []

        def start() -> None:
            task = self._loop.create_task(coro)
            task.add_done_callback(lambda _: done.release())
            started.append(task)

        self._loop.call_soon_threadsafe(start)
        try:
            done.acquire()
        except BaseException:  # interrupted while waiting: cancel the coroutine (start ran first)
            self._loop.call_soon_threadsafe(lambda: started and started[0].cancel())
            raise
        return started[0].result()

    def iterate(self, iterator: AsyncIterator[T]) -> Generator[T, None, None]:
        """Yield the items of ``iterator``, each fetched through the loop on demand."""
        ait = iterator.__aiter__()
        sentinel: Any = object()

        async def pull() -> Any:
            try:
                return await ait.__anext__()
            except StopAsyncIteration:
                return sentinel

        while (item := self.call(pull())) is not sentinel:
            try:
                yield item
            except GeneratorExit:  # the consumer stopped early: close the source too
                aclose = getattr(ait, "aclose", None)
                if aclose is not None and not self._closed:
                    with contextlib.suppress(Exception):
                        self.call(aclose())
                raise

    def close(self) -> None:
        """Stop the loop (cancelling what still runs there) and join the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            if threading.current_thread() is not self._thread:
                self._thread.join()

    def __enter__(self) -> Portal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
