"""Records inferences off the hot path: requests append to a buffer, a task writes batches."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ..telemetry.ids import current_ids
from .store import Store

log = logging.getLogger("runyard.recorder")

Row = dict[str, Any]
Entry = tuple[str, str | None, Callable[[], Row], int]  # inference id, episode id, row builder, bytes held

# What a buffered row holds besides its payload (its builder, the objects it closes over):
# 1.5 KB for an embedding, 2.7 KB for a short chat (tracemalloc, 1,000 rows each).
ENTRY_OVERHEAD = 2_000


class RecordingError(RuntimeError):
    """A ``recording = "sync"`` row could not be written (dropped, or the database refused it)."""


# Rows per transaction at most. A write costs a few round trips to the database thread, each
# waiting a turn of the busy event loop; taking what has piled up (to this many) in one write
# keeps the writer ahead of the request rate (bench/README.md: 100-row writes peaked near
# 2,000 rows/s under load and the buffer grew without bound).
MAX_ROWS_PER_WRITE = 2_000


class InferenceRecorder:
    """Buffered, batched inference writes; a request never waits for the database.

    ``record`` takes a thunk that builds the row, so serialising inputs and outputs also
    happens in the writer, not in the request. The writer wakes every ``flush_interval_s`` or
    when ``batch_size`` rows wait, and writes up to :data:`MAX_ROWS_PER_WRITE` per transaction,
    building them ``batch_size`` at a time between turns of the event loop. If the database is
    down, rows are kept (up to ``max_buffer`` rows and ``max_buffer_bytes``, each row weighed
    as :data:`ENTRY_OVERHEAD` plus the size its filer gives; beyond either the oldest are dropped
    and counted) and retried.

    ``recording = "sync"`` (:meth:`persist`): the caller awaits its row's write before its answer
    leaves; rows recorded while a write is under way share the next transaction (group commit).
    ``async`` (default) loses what is buffered if the process dies without a shutdown (up to
    ``flush_interval_s`` of rows, or more while the database is down); a SIGTERM drains it.
    """

    def __init__(
        self,
        store: Store,
        *,
        flush_interval_s: float,
        batch_size: int,
        max_buffer: int,
        max_buffer_bytes: int | None = None,
        max_rows_per_write: int = MAX_ROWS_PER_WRITE,
    ) -> None:
        self._store = store
        self._interval = flush_interval_s
        self._batch_size = batch_size
        # (never more than the buffer holds: a batch that failed must fit back in whole)
        self._max_rows = min(max(batch_size, max_rows_per_write), max_buffer)
        self._buffer: deque[Entry] = deque(maxlen=max_buffer)
        self._max_bytes = max_buffer_bytes
        self._bytes = 0  # what the rows in the buffer hold (a batch being written left it)
        self._pending_ids: set[str] = set()
        self._pending_episodes: dict[str, int] = {}  # a dict, not a Counter: its += and del run in Python
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._closing = False
        self._waiters: dict[str, asyncio.Future[None]] = {}  # persist() callers, by inference id
        self.dropped = 0
        self.written = 0

    def record(self, inference_id: str, episode_id: str | None, build_row: Callable[[], Row], size: int = 0) -> None:
        """Buffer a row; ``size``: about how many bytes its payload holds (inputs, outputs)."""
        ids = current_ids()  # the request's id and trace id, kept on the row
        if ids is not None:
            build_row = functools.partial(_with_ids, build_row, ids)
        size += ENTRY_OVERHEAD
        if self._over(1, size):
            self._drop(1, size, newest=False)
        self._buffer.append((inference_id, episode_id, build_row, size))
        self._bytes += size
        self._pending_ids.add(inference_id)
        if episode_id:
            episodes = self._pending_episodes
            episodes[episode_id] = episodes.get(episode_id, 0) + 1
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    def _over(self, rows: int, size: int) -> bool:
        """Would ``rows`` more rows holding ``size`` bytes take the buffer past either bound?"""
        return len(self._buffer) + rows > (self._buffer.maxlen or 0) or (
            self._max_bytes is not None and self._bytes + size > self._max_bytes
        )

    def _drop(self, rows: int, size: int, *, newest: bool) -> None:
        """Make room for ``rows`` rows of ``size`` bytes: the oldest go (a new row arriving), or the
        newest (a failed batch going back to the front); dropped and counted."""
        lost = []
        while self._buffer and self._over(rows, size):
            entry = self._buffer.pop() if newest else self._buffer.popleft()
            self._bytes -= entry[3]
            lost.append(entry)
        if not lost:
            return
        self._forget(lost, written=False)
        before, self.dropped = self.dropped, self.dropped + len(lost)
        if newest or before == 0 or before // 1000 != self.dropped // 1000:
            log.error("inference buffer full: %d records dropped so far", self.dropped)

    def stats(self) -> dict[str, int]:
        """Rows not written yet (buffered or being written), the bytes the buffered ones hold, and
        rows written and dropped since start (``/v1/status``, metrics)."""
        # pending: the buffer plus a batch being written (its rows left the buffer, not yet written)
        return {
            "buffered": len(self._pending_ids),
            "buffered_bytes": self._bytes,
            "written": self.written,
            "dropped": self.dropped,
        }

    async def persist(self, inference_id: str) -> None:
        """Return once ``inference_id``'s row is in the database (``recording = "sync"``); raises
        :class:`RecordingError` if it was dropped, and the write's error if the database is down."""
        if inference_id not in self._pending_ids:
            return
        waiter = self._waiters.get(inference_id)
        if waiter is None:
            waiter = self._waiters[inference_id] = asyncio.get_running_loop().create_future()
        self._wake.set()
        await asyncio.shield(waiter)

    def is_pending(self, inference_id: str) -> bool:
        return inference_id in self._pending_ids

    def is_pending_episode(self, episode_id: str) -> bool:
        return self._pending_episodes.get(episode_id, 0) > 0

    def _forget(self, entries: list[Entry], *, written: bool = True) -> None:
        episodes = self._pending_episodes
        waiters = self._waiters
        for inference_id, episode_id, _, _ in entries:
            self._pending_ids.discard(inference_id)
            if waiters:
                waiter = waiters.pop(inference_id, None)
                if waiter is not None and not waiter.done():
                    if written:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(RecordingError(f"inference {inference_id} was dropped: buffer full"))
            if episode_id:
                left = episodes.get(episode_id, 0) - 1
                if left > 0:
                    episodes[episode_id] = left
                else:
                    episodes.pop(episode_id, None)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="runyard-recorder")

    async def aclose(self) -> None:
        """Stop the writer between batches (never mid-INSERT), then write what is left."""
        self._closing = True
        if self._task is not None:
            self._wake.set()
            try:
                await self._task
            finally:
                self._task = None
        await self.flush()

    async def flush(self) -> None:
        """Write everything buffered now (on shutdown, and for readers that need their rows)."""
        async with self._flush_lock:
            while self._buffer:
                await self._write_batch()

    async def _write_due(self) -> None:
        """The writer's turn: what is buffered now, then more only while a whole batch waits.

        Rows that arrive during a write wait for the next turn (``batch_size`` of them, the
        interval, or a ``persist`` caller): draining to empty wrote a few rows per transaction
        without end under steady load (sync c=1 in process: 4 rows an INSERT, 0.3 ms of CPU a
        request; bench/README.md, "Figures 2026-12-06, third session")."""
        async with self._flush_lock:
            if self._buffer:
                await self._write_batch()
            while len(self._buffer) >= self._batch_size:
                await self._write_batch()

    async def _write_batch(self) -> None:
        """One transaction of up to ``max_rows_per_write`` rows from the front of the buffer."""
        batch = [self._buffer.popleft() for _ in range(min(self._max_rows, len(self._buffer)))]
        self._bytes -= sum(entry[3] for entry in batch)
        try:
            rows = await self._build(batch)
        except BaseException:  # cancelled between slices: the batch goes back, nothing lost
            self._requeue(batch)
            raise
        # shielded: a cancel must not cut the INSERT off mid-transaction (SQLite would keep
        # its write lock and the batch, already taken from the buffer, would be lost)
        insert = asyncio.ensure_future(self._store.insert_inferences(rows))
        try:
            await asyncio.shield(insert)
        except asyncio.CancelledError:
            insert.add_done_callback(functools.partial(self._landed, batch=batch, n_rows=len(rows)))
            raise
        except Exception as err:
            self._requeue(batch)
            self._fail_waiters(batch, err)
            raise
        self._forget(batch)
        self.written += len(rows)

    async def _build(self, batch: list[Entry]) -> list[Row]:
        """The batch's rows, ``batch_size`` at a time with a turn of the event loop between (a
        2,000-row batch built in one go would hold requests up for tens of milliseconds)."""
        rows: list[Row] = []
        for start in range(0, len(batch), self._batch_size):
            if start:
                await asyncio.sleep(0)
            for inference_id, _, build, _ in batch[start : start + self._batch_size]:
                try:
                    rows.append(build())
                except Exception:
                    log.exception("could not serialise inference %s; skipped", inference_id)
        return rows

    def _fail_waiters(self, batch: list[Entry], err: Exception) -> None:
        """persist() callers of a batch that failed get the error (their rows stay buffered)."""
        for inference_id, _, _, _ in batch:
            waiter = self._waiters.pop(inference_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(RecordingError(f"inference {inference_id} not written yet: {err}"))

    def _requeue(self, batch: list[Entry]) -> None:
        """A batch not written goes back to the front; if the buffer is full the newest rows make room
        (dropped and counted, as :meth:`record` does with the oldest)."""
        back = sum(entry[3] for entry in batch)
        self._drop(len(batch), back, newest=True)
        self._buffer.extendleft(reversed(batch))
        self._bytes += back

    def _landed(self, insert: asyncio.Future[None], batch: list[Entry], n_rows: int) -> None:
        """A batch whose flush was cancelled: written once its INSERT is done, else back in the buffer."""
        if insert.cancelled() or insert.exception() is not None:
            self._requeue(batch)
            return
        self._forget(batch)
        self.written += n_rows

    async def _run(self) -> None:
        backoff = self._interval
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                return
            try:
                await self._write_due()
                backoff = self._interval
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing inferences failed; will retry")
                backoff = min(max(backoff * 2, 0.5), 30.0)


def _with_ids(build_row: Callable[[], Row], ids: tuple[str | None, str | None]) -> Row:
    row = build_row()
    row["request_id"], row["trace_id"] = ids
    return row
