"""The inference.sh adapter's own state: its pending uploads, and each chat's current run (the
NDJSON event log a chat stream reads, and the background task that writes it).

One :class:`InferenceshRuns` per app, made by the app factory and passed to the adapter's routes;
:meth:`InferenceshRuns.aclose` cancels the runs still going when the app shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import orjson


class Run:
    """One chat's current run: its event log, appended to by the run's task."""

    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.changed = asyncio.Event()
        self.closed = False  # a terminal ``chats`` event was written
        self.task: asyncio.Task[None] | None = None
        self.seq = 0

    def push(self, event: str, data: Any) -> None:
        self.events.append(orjson.dumps({"event": event, "data": data}) + b"\n")
        self.changed.set()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


class InferenceshRuns:
    """Pending uploads (token -> {filename, content_type, file_id}) and each chat's current run."""

    def __init__(self) -> None:
        self.uploads: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, Run] = {}

    def get(self, chat_id: str) -> Run | None:
        return self.runs.get(chat_id)

    async def settle(self, chat_id: str, timeout: float | None = None) -> None:
        """Wait for the chat's running run, if any (at most ``timeout`` s: then leave it running)."""
        run = self.runs.get(chat_id)
        if run is None or run.task is None or run.task.done():
            return
        if timeout is None:
            await run.task
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(run.task), timeout)

    def start(self, chat_id: str, work: Callable[[Run], Coroutine[Any, Any, None]], *, new: bool) -> Run:
        """Run ``work`` in the background on the chat's run: a new one when ``new`` or when the
        last one is over, else the current one (a run that waits for a tool result goes on)."""
        run = self.runs.get(chat_id)
        if new or run is None or run.closed:
            run = self.runs[chat_id] = Run()
        run.task = asyncio.create_task(work(run))
        return run

    async def aclose(self) -> None:
        """Cancel the runs still going (the app is shutting down)."""
        tasks = [run.task for run in self.runs.values() if run.task is not None and not run.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
