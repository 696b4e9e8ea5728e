"""The recorder's writes to a SQLite file: its own connection, in one thread, one hop a batch.

Through SQLAlchemy over aiosqlite a batch's transaction took six or more hops to the driver's
thread (check-out, cursor, each INSERT, commit, the reset on return), each a wake-up of that
thread and of the event loop: 1 ms of CPU a batch, 10 µs a row at the default 100-row batches.
Here the whole transaction (``BEGIN IMMEDIATE``, the INSERTs, ``COMMIT``) is one call in the
writer's thread: 13.9 µs a row instead of 22.9, with the row building included (bench/README.md,
"Figures 2026-12-06, seventh session"). SQLite allows one writer at a time per file; readers go on
through the store's engine (WAL), and another process's writer waits its turn (``busy_timeout``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Statement = tuple[str, Sequence[Any]]


def sqlite_pragmas(dbapi_conn: Any, _record: Any = None) -> None:
    """Every connection to a store's SQLite file, the engine's (a ``connect`` listener) and the
    writer's: WAL, fsync at checkpoints only, and a wait of up to 5 s for another writer."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class SqliteBatchWriter:
    """Writes batches of statements to the SQLite file at ``path``, each batch one transaction.
    The thread and the connection open on the first write; after :meth:`aclose` the next write
    opens them again (as the store's engine reconnects after ``dispose``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.transactions = 0  # committed (tests read it)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def write(self, statements: Sequence[Statement]) -> None:
        """Run ``statements`` in one transaction; all of them land or none (the error is raised)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runyard-sqlite-writer")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, statements)

    async def aclose(self) -> None:
        """Finish the writes under way, then close the connection and the thread (twice is fine)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
            executor.shutdown(wait=False)

    def _write(self, statements: Sequence[Statement]) -> None:
        conn = self._conn or self._open()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.transactions += 1

    def _open(self) -> sqlite3.Connection:
        # autocommit mode (isolation_level None): the transaction is the one _write begins
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, cached_statements=16)
        sqlite_pragmas(conn)
        self._conn = conn
        return conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
