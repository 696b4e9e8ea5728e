"""Real Postgres and Redis for tests: fresh databases and key prefixes, dropped afterwards.

``RUNYARD_TEST_POSTGRES_URL`` (an admin URL, e.g. ``postgresql+asyncpg://postgres@127.0.0.1/postgres``)
and ``RUNYARD_TEST_REDIS_URL`` name the servers; unset, the defaults below are tried. A server
that does not answer skips the tests that need it, except under ``CI=true``, where it fails them.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

T = TypeVar("T")


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on its own loop in a thread (callable inside a running loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_await(make))
        except BaseException as err:
            box["error"] = err

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _await(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def _unavailable(what: str, err: BaseException) -> None:
    message = (
        f"{what} is not reachable ({type(err).__name__}: {err}); set RUNYARD_TEST_POSTGRES_URL / RUNYARD_TEST_REDIS_URL"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


# -- Postgres -----------------------------------------------------------------------


def postgres_admin_url() -> str:
    return os.environ.get("RUNYARD_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def _dsn(url: str, database: str | None = None) -> str:
    """The asyncpg DSN of a SQLAlchemy URL (optionally another database on the same server)."""
    u = make_url(url).set(drivername="postgresql")
    if database is not None:
        u = u.set(database=database)
    return u.render_as_string(hide_password=False)


async def _admin(sql: str, admin_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(admin_url), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(name: str, admin_url: str | None = None) -> str:
    """Create database ``name``; returns its SQLAlchemy URL."""
    admin = admin_url or postgres_admin_url()
    run_sync(lambda: _admin(f'CREATE DATABASE "{name}"', admin))
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def drop_database(name: str, admin_url: str | None = None) -> None:
    admin = admin_url or postgres_admin_url()
    run_sync(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin))


def drop_databases_with_prefix(prefix: str, admin_url: str | None = None) -> None:
    import asyncpg

    admin = admin_url or postgres_admin_url()

    async def drop() -> None:
        conn = await asyncpg.connect(_dsn(admin), timeout=5)
        try:
            names = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", prefix + "%")
            for row in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{row[0]}" WITH (FORCE)')
        finally:
            await conn.close()

    run_sync(drop)


def fresh_postgres_url() -> tuple[str, str]:
    """(url, name) of a new empty database; skips (or fails under CI) without Postgres."""
    name = "runyard_test_" + uuid.uuid4().hex[:12]
    try:
        return create_database(name), name
    except ImportError as err:
        _unavailable("asyncpg", err)
    except (OSError, asyncio.TimeoutError, Exception) as err:
        _unavailable("Postgres", err)
    raise AssertionError("unreachable")


# -- Redis --------------------------------------------------------------------------


def redis_url() -> str:
    return os.environ.get("RUNYARD_TEST_REDIS_URL") or DEFAULT_REDIS_URL


def fresh_redis_prefix() -> str:
    """A unique key prefix on a reachable Redis; skips (or fails under CI) without one."""
    try:
        import redis

        client = redis.Redis.from_url(redis_url(), socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except ImportError as err:
        _unavailable("the redis package", err)
    except Exception as err:
        _unavailable("Redis", err)
    return f"runyard-test:{uuid.uuid4().hex[:12]}:"


def delete_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url())
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for at in range(0, len(keys), 500):
            client.delete(*keys[at : at + 500])
    finally:
        client.close()


@pytest.fixture
def postgres_url() -> Any:
    """A fresh Postgres database for this test (dropped after)."""
    url, name = fresh_postgres_url()
    try:
        yield url
    finally:
        drop_database(name)


@pytest.fixture
def redis_prefix() -> Any:
    """A unique key prefix on the test Redis (its keys deleted after)."""
    prefix = fresh_redis_prefix()
    try:
        yield prefix
    finally:
        delete_redis_prefix(prefix)


# -- the whole suite on Postgres + Redis (support.scaleout_hook) ---------------------


def pytest_configure(config: pytest.Config) -> None:
    from support import scaleout_hook

    config.addinivalue_line("markers", "sqlite_only(reason): the test is about SQLite; skipped on Postgres")
    if not scaleout_hook.enabled():
        return
    os.environ.setdefault(scaleout_hook.SESSION_ENV, uuid.uuid4().hex[:10])
    support_dir = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join(support_dir, "scaleout_site"), os.path.dirname(support_dir)]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    scaleout_hook.install()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from support import scaleout_hook

    if not scaleout_hook.enabled():
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason="SQLite-specific: " + (marker.args[0] if marker.args else "")))


def pytest_report_header(config: pytest.Config) -> str | None:
    from support import scaleout_hook

    if not scaleout_hook.enabled():
        return None
    return f"scale-out run: stores on {postgres_admin_url()}, Redis {redis_url()} (session {scaleout_hook.session()})"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from support import scaleout_hook

    if not scaleout_hook.enabled() or scaleout_hook.SESSION_ENV not in os.environ:
        return
    drop_databases_with_prefix(scaleout_hook.database_prefix())
    if os.environ.get("RUNYARD_TEST_REDIS_URL"):
        delete_redis_prefix(scaleout_hook.redis_prefix())
