"""The whole suite on Postgres + Redis: every store a test builds is moved to Postgres.

Enabled by ``RUNYARD_TEST_POSTGRES_URL`` (see :mod:`support.scaleout`). Each SQLite file a test
names becomes its own Postgres database (``ryt_<session>_<hash of the path>``, created on first
use), so tests keep the isolation their temporary files gave them and a server, its workers and
the test itself, naming the same file, share one database. Every config gets a ``[redis]`` table
with a prefix unique to the session. Installed in the test process by the pytest plugin and in
the ``runyard`` subprocesses tests start by ``scaleout_site/sitecustomize.py``; the session drops
its databases and keys at the end.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

SESSION_ENV = "RUNYARD_TEST_SCALEOUT_SESSION"


def enabled() -> bool:
    return bool(os.environ.get("RUNYARD_TEST_POSTGRES_URL"))


def session() -> str:
    return os.environ[SESSION_ENV]


def database_prefix() -> str:
    return f"ryt_{session()}_"


def redis_prefix() -> str:
    return f"runyard-test:{session()}:"


def postgres_url_for(sqlite_url: str) -> str:
    """The Postgres database standing in for a SQLite URL (created if new, as a copy of the
    session's migrated template: a fresh database costs a file copy, not the migrations)."""
    from sqlalchemy.engine import make_url

    from support.scaleout import postgres_admin_url, run_sync

    database = make_url(sqlite_url).database or ""
    if database in ("", ":memory:"):
        ident = uuid.uuid4().hex
    else:
        ident = str(Path(database).expanduser().resolve())
    name = database_prefix() + hashlib.sha256(ident.encode()).hexdigest()[:16]
    admin = postgres_admin_url()
    run_sync(lambda: _clone(admin, name))
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


_TEMPLATE_LOCK = 0x72756E79  # pg_advisory_lock key held while a database is made from the template


async def _clone(admin: str, name: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    from runyard.backends.store import Store
    from support.scaleout import _dsn

    template = database_prefix() + "template"
    conn = await asyncpg.connect(_dsn(admin), timeout=10)
    try:
        # One lock for the template and the copy: processes naming the same file race to create
        # it (a unique violation in pg_database), and a copy fails while another reads the template.
        await conn.execute("SELECT pg_advisory_lock($1)", _TEMPLATE_LOCK)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template):
                await conn.execute(f'CREATE DATABASE "{template}"')
                store = Store(make_url(admin).set(database=template).render_as_string(hide_password=False))
                try:
                    await store.start()
                finally:
                    await store.aclose()
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                # the server, its workers and the test share one (whoever came first made it)
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _TEMPLATE_LOCK)
    finally:
        await conn.close()


def install() -> None:
    """Move stores to Postgres and give configs a ``[redis]`` table (idempotent)."""
    from runyard import config as config_module
    from runyard.backends import store as store_module

    Store = store_module.Store
    if getattr(Store.__init__, "_scaleout", False):
        return
    original_init = Store.__init__

    def init(self: Any, url: str, **kwargs: Any) -> None:
        if str(url).startswith("sqlite"):
            url = postgres_url_for(str(url))
        original_init(self, url, **kwargs)

    init._scaleout = True  # type: ignore[attr-defined]
    Store.__init__ = init  # type: ignore[method-assign]

    original_post_init = config_module.RunyardConfig.model_post_init

    def post_init(self: Any, context: Any) -> None:
        original_post_init(self, context)
        if self.redis is None and os.environ.get("RUNYARD_TEST_REDIS_URL"):
            self.redis = config_module.RedisConfig(url=os.environ["RUNYARD_TEST_REDIS_URL"], prefix=redis_prefix())

    config_module.RunyardConfig.model_post_init = post_init  # type: ignore[method-assign]
