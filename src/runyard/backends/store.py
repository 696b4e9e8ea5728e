"""The store: SQLAlchemy 2 async over SQLite (default, WAL) or Postgres; migrated on start."""

from __future__ import annotations

import ast
import asyncio
import fcntl
import functools
import operator
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
import uuid_utils
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .schema import api_keys, feedback, inferences
from .sqlite_writer import SqliteBatchWriter, sqlite_pragmas

if TYPE_CHECKING:
    from ..config import StorageConfig

API_KEY_LIMITS = ("rpm_sync", "rpm_async", "tpm", "spend_limit", "period")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key held while migrating ("runyard" in ASCII, as a bigint)
MIGRATION_LOCK_KEY = int.from_bytes(b"runyard", "big")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Store:
    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20, pool_timeout_s: float = 30.0) -> None:
        """``pool_*``: the connection pool of a server database (Postgres); SQLite ignores them."""
        self.url = make_url(url)
        self._sqlite = self.url.get_backend_name() == "sqlite"
        pool: dict[str, Any] = {}
        if not self._sqlite:
            pool = dict(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout_s, pool_pre_ping=True)
        # orjson for JSON columns: the stdlib encoder was a visible share of the recorder's cost.
        self.engine: AsyncEngine = create_async_engine(
            url, json_serializer=_json_dumps, json_deserializer=orjson.loads, **pool
        )
        # a SQLite file's inference rows: written on the recorder's own connection, one thread hop a batch
        self.batch_writer: SqliteBatchWriter | None = None
        if self._sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
            database = self.url.database
            if database not in (None, "", ":memory:") and not self.url.query:  # a plain file
                self.batch_writer = SqliteBatchWriter(database)

    @classmethod
    def from_config(cls, storage: StorageConfig) -> Store:
        return cls(
            storage.url,
            pool_size=storage.pool_size,
            max_overflow=storage.max_overflow,
            pool_timeout_s=storage.pool_timeout_s,
        )

    def exists(self) -> bool:
        """Whether the store is there already (a SQLite file not yet created is not; a server is)."""
        database = self.url.database
        if self.url.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
            return True
        return Path(database).expanduser().is_file()

    @property
    def is_postgres(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    async def start(self) -> None:
        """Create the database (and its folder) if needed and apply pending migrations.

        Processes sharing a database migrate one at a time: SQLite under a file lock beside the
        file, Postgres under a transaction-scoped advisory lock (``pg_advisory_xact_lock``); without
        it two fresh starts raced in Alembic and one exited. Whoever comes second finds the head.
        """
        if self.exists() and await self.at_head():  # the usual start: Alembic not even imported
            return
        lock = None
        if self._sqlite and self.url.database not in (None, "", ":memory:"):
            lock = await asyncio.to_thread(_migration_lock, self.url.database)
        try:
            async with self.engine.begin() as conn:
                if self.is_postgres:
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                await conn.run_sync(_upgrade)
        finally:
            if lock is not None:
                lock.close()  # closing the descriptor releases the lock

    async def at_head(self) -> bool:
        """True when the database's migrations are those this code ships (``/readyz``)."""
        async with self.engine.connect() as conn:
            try:
                current = {row[0] for row in await conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
            except sa.exc.DBAPIError:  # a new database: no version table yet
                return False
        return current == shipped_heads()

    async def aclose(self) -> None:
        if self.batch_writer is not None:
            await self.batch_writer.aclose()
        await self.engine.dispose()

    # -- inferences ---------------------------------------------------------
    async def insert_inferences(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if not self._sqlite and self.url.get_driver_name() != "asyncpg":
            async with self.engine.begin() as conn:
                await conn.execute(inferences.insert(), rows)
            return
        if not self._sqlite:
            # asyncpg: one binary COPY for the whole batch: 1.5-2.1x the rows/s of executemany's
            # pipelined INSERTs (SQLAlchemy's per-row parameter processing, Postgres's bind and
            # execute per row), measured by bench/pg_recorder.py.
            records = [_column_values(row) for row in rows]
            async with self.engine.begin() as conn:  # one COPY, one transaction
                raw = await conn.get_raw_connection()
                await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                    "inferences", records=records, columns=_INFERENCE_COLUMNS
                )
            return
        # Multi-row INSERTs of values converted here. SQLAlchemy's per-row bind processing was most
        # of the recorder's cost; executemany's one sqlite3_step per row made the writer thread take
        # the GIL back from the event loop once per row; a file's batch is one transaction on the
        # recorder's own connection (backends/sqlite_writer.py); and values are converted a slice
        # at a time, with a turn of the event loop between, not to hold requests up (bench/README.md).
        statements = []
        for first, chunk in enumerate(_sqlite_chunks(rows)):
            values: list[Any] = []
            for at in range(0, len(chunk), _SQLITE_CONVERT_SLICE):
                if first or at:
                    await asyncio.sleep(0)
                values.extend(chain.from_iterable(map(_sqlite_row, chunk[at : at + _SQLITE_CONVERT_SLICE])))
            statements.append((_sqlite_insert(len(chunk)), tuple(values)))
        if self.batch_writer is not None:
            await self.batch_writer.write(statements)
            return
        async with self.engine.begin() as conn:
            for sql, params in statements:
                await conn.exec_driver_sql(sql, params)

    async def get_inference(self, inference_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(inferences).where(inferences.c.id == inference_id))).first()
        return _plain(row) if row else None

    async def episode_exists(self, episode_id: str) -> bool:
        query = sa.select(inferences.c.id).where(inferences.c.episode_id == episode_id).limit(1)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def count_inferences(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(inferences))).scalar_one())

    # -- feedback -----------------------------------------------------------
    async def insert_feedback(
        self, *, target_type: str, target_id: str, metric_name: str, value: Any, tags: dict[str, str]
    ) -> str:
        feedback_id = new_id()
        async with self.engine.begin() as conn:
            await conn.execute(
                feedback.insert().values(
                    id=feedback_id,
                    target_type=target_type,
                    target_id=target_id,
                    metric_name=metric_name,
                    value=value,
                    tags=tags,
                    created_at=utcnow(),
                )
            )
        return feedback_id

    async def list_feedback(self, target_id: str) -> list[dict[str, Any]]:
        query = sa.select(feedback).where(feedback.c.target_id == target_id).order_by(feedback.c.created_at)
        async with self.engine.connect() as conn:
            return [_plain(r) for r in await conn.execute(query)]

    # -- api keys -----------------------------------------------------------
    async def add_api_key(self, name: str, key_hash: str, *, workspace: str = "default", **limits: Any) -> str:
        """``limits``: any of rpm_sync, rpm_async, tpm, spend_limit, period (None: the config's default)."""
        key_id = str(uuid.uuid4())
        unknown = set(limits) - set(API_KEY_LIMITS)
        if unknown:
            raise ValueError(f"unknown key limits: {sorted(unknown)}")
        values = dict(id=key_id, name=name, key_hash=key_hash, workspace=workspace, created_at=utcnow(), **limits)
        async with self.engine.begin() as conn:
            await conn.execute(api_keys.insert().values(**values))
        return key_id

    async def list_api_keys(self, *, include_revoked: bool = True) -> list[dict[str, Any]]:
        """Every key's metadata and limits (never the hash), oldest first."""
        query = sa.select(*[c for c in api_keys.c if c.name != "key_hash"]).order_by(api_keys.c.created_at)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with self.engine.connect() as conn:
            return [_plain(r) for r in await conn.execute(query)]

    async def load_api_keys(self, key_hash: str | None = None) -> list[dict[str, Any]]:
        """Active keys with their hash, workspace and limits (one key when ``key_hash`` is given)."""
        query = sa.select(api_keys).where(api_keys.c.revoked_at.is_(None))
        if key_hash is not None:
            query = query.where(api_keys.c.key_hash == key_hash)
        async with self.engine.connect() as conn:
            return [_plain(r) for r in await conn.execute(query)]

    async def api_keys_version(self) -> tuple[Any, ...]:
        """A cheap fingerprint of the api_keys table that changes on every create and revoke."""
        c = api_keys.c
        query = sa.select(
            sa.func.count(), sa.func.count(c.revoked_at), sa.func.max(c.created_at), sa.func.max(c.revoked_at)
        )
        async with self.engine.connect() as conn:
            return tuple((await conn.execute(query)).one())

    async def revoke_api_key(self, key_id: str) -> dict[str, Any] | None:
        """Revoke by id; the key's row (revoked_at set; kept for usage history), or None if unknown."""
        async with self.engine.begin() as conn:
            active = sa.and_(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            await conn.execute(api_keys.update().where(active).values(revoked_at=utcnow()))
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is None:
            return None
        out = _plain(row)
        out.pop("key_hash", None)
        return out

    async def active_api_keys(self) -> dict[str, str]:
        """hash -> key id, for keys not revoked."""
        query = sa.select(api_keys.c.key_hash, api_keys.c.id).where(api_keys.c.revoked_at.is_(None))
        async with self.engine.connect() as conn:
            return {h: i for h, i in await conn.execute(query)}


_INFERENCE_COLUMNS = tuple(c.name for c in inferences.columns)
# Rows per INSERT: up to 500, as many as SQLite's limit on bound parameters allows (999 before
# 3.32, 32,766 since).
_SQLITE_MAX_PARAMS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_SQLITE_ROWS_PER_INSERT = min(500, _SQLITE_MAX_PARAMS // len(_INFERENCE_COLUMNS))
_SQLITE_CONVERT_SLICE = 100  # rows converted between turns of the event loop


def _sqlite_chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``rows`` in INSERTs of :data:`_SQLITE_ROWS_PER_INSERT` rows, the rest in powers of two.

    Each length is a statement the driver prepares and keeps (128 per connection): with any length
    from 1 to 500, the cache held up to 128 multi-row INSERTs per connection and the gateway's RSS
    grew by ~100 MB a quarter-minute under load (bench/README.md); with these, at most 10 shapes."""
    start, left = 0, len(rows)
    while left >= _SQLITE_ROWS_PER_INSERT:
        yield rows[start : start + _SQLITE_ROWS_PER_INSERT]
        start, left = start + _SQLITE_ROWS_PER_INSERT, left - _SQLITE_ROWS_PER_INSERT
    size = 256
    while left:
        while size > left:
            size //= 2
        yield rows[start : start + size]
        start, left = start + size, left - size


@functools.lru_cache(maxsize=16)
def _sqlite_insert(n_rows: int) -> str:
    """``INSERT INTO inferences (...) VALUES (?, ...), ...`` for ``n_rows`` rows."""
    row = "(" + ", ".join("?" for _ in _INFERENCE_COLUMNS) + ")"
    return f"INSERT INTO inferences ({', '.join(_INFERENCE_COLUMNS)}) VALUES " + ", ".join([row] * n_rows)


def _sqlite_datetime(value: datetime) -> str:
    # SQLAlchemy's SQLite DATETIME storage format (naive UTC), so reads parse it back.
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


# Columns whose values SQLite cannot take as they are (booleans it takes: sqlite3 binds them as 0/1).
_JSON_AT = tuple(i for i, c in enumerate(inferences.columns) if isinstance(c.type, sa.JSON))
_DATETIME_AT = tuple(i for i, c in enumerate(inferences.columns) if isinstance(c.type, sa.DateTime))
_ALL_COLUMNS = operator.itemgetter(*_INFERENCE_COLUMNS)


def _column_values(row: dict[str, Any]) -> list[Any]:
    """A row's values in column order (taken in one C call), the JSON columns encoded (orjson)."""
    try:
        values = list(_ALL_COLUMNS(row))
    except KeyError:  # a row without some optional columns
        values = [row.get(name) for name in _INFERENCE_COLUMNS]
    dumps = orjson.dumps
    for i in _JSON_AT:
        value = values[i]
        if value is not None:
            values[i] = dumps(value).decode()
    return values


def _sqlite_row(row: dict[str, Any]) -> list[Any]:
    """A row's values as SQLite stores them: the datetimes formatted as SQLAlchemy reads them back."""
    values = _column_values(row)
    for i in _DATETIME_AT:
        if values[i] is not None:
            values[i] = _sqlite_datetime(values[i])
    return values


def _plain(row: sa.Row[Any]) -> dict[str, Any]:
    """A row as a dict with plain ``str`` keys (SQLAlchemy's are a str subclass orjson refuses)."""
    return {str(k): v for k, v in row._mapping.items()}


def new_id() -> str:
    """A UUIDv7 (time-ordered) string, as TensorZero uses for inference and episode ids."""
    return str(uuid_utils.uuid7())


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _migration_lock(database: str) -> IO[bytes]:
    """Create the database's folder and take an exclusive advisory lock beside the file (blocks
    until free); closing the returned handle releases it."""
    db = Path(database).expanduser()
    db.parent.mkdir(parents=True, exist_ok=True)
    handle = db.with_name(db.name + ".migrate-lock").open("ab")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    return handle


def _upgrade(sync_conn: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "heads")  # one branch per feature area is fine


@functools.cache
def shipped_heads() -> frozenset[str]:
    """The head revisions of the migrations this code ships, read from their files' ``revision``
    and ``down_revision`` assignments (importing Alembic to ask cost every start ~11 MB and
    0.1 s; tests check both answers agree)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name, value = node.targets[0].id, node.value
                if name == "revision":
                    revisions.add(ast.literal_eval(value))
                elif name == "down_revision":
                    down = ast.literal_eval(value)
                    parents.update([down] if isinstance(down, str) else down or ())
    return frozenset(revisions - parents)
