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
    """The Postgres database standing in for a SQLite URL (created if new)."""
    from sqlalchemy.engine import make_url

    from support.scaleout import create_database, postgres_admin_url

    database = make_url(sqlite_url).database or ""
    if database in ("", ":memory:"):
        ident = uuid.uuid4().hex
    else:
        ident = str(Path(database).expanduser().resolve())
    name = database_prefix() + hashlib.sha256(ident.encode()).hexdigest()[:16]
    admin = postgres_admin_url()
    try:
        return create_database(name, admin)
    except Exception as err:  # another process created it first
        if "already exists" not in str(err):
            raise
        return make_url(admin).set(database=name).render_as_string(hide_password=False)


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
