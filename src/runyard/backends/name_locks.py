"""A lock on a name for the rest of a transaction, for the read-then-insert steps several
gateways may run at once: claiming a namespace, numbering a template's next version.

On Postgres it is ``pg_advisory_xact_lock`` on a 64-bit hash of the name, released at commit or
rollback; SQLite needs none (one writer at a time, one process).
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")


async def lock_name(conn: AsyncConnection, name: str) -> None:
    """Wait for, then hold until the transaction ends, the lock on ``name``."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
        await conn.execute(_LOCK, {"key": key})
