"""The audit log: admin actions (keys created/revoked, limits changed, definitions published,
aliases moved, approvals given) recorded with who, what and when; read by admins
(``GET /v1/audit``, ``runyard audit``). Never holds a secret: callers pass ids and names only.

Actions are dotted names: ``key.created``, ``key.revoked``, ``limits.changed``,
``workflow.published``, ``workflow.alias_moved``, ``agent.published``, ``approval.given``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from ..backends.store import Store, new_id

__all__ = ["AuditLog", "audit_log"]

audit_log = sa.Table(  # created by migration 0010_audit_log
    "audit_log",
    sa.MetaData(),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(255)),
    sa.Column("workspace", sa.String(255)),  # as api_keys.workspace
    sa.Column("details", sa.JSON),
)
MAX_PAGE = 500


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(
        self,
        action: str,
        *,
        actor: str,
        target: str | None = None,
        workspace: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> str:
        """Append one entry; its id."""
        entry_id = str(new_id())
        row = {
            "id": entry_id,
            "at": datetime.now(timezone.utc),
            "actor": actor[:255],
            "action": action[:64],
            "target": target[:255] if target else None,
            "workspace": workspace,
            "details": details,
        }
        async with self.store.engine.begin() as conn:
            await conn.execute(audit_log.insert().values(**row))
        return entry_id

    async def entries(
        self,
        *,
        limit: int = 100,
        action: str | None = None,
        since: datetime | None = None,
        workspace: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``workspace`` limits them to one workspace's entries."""
        query = sa.select(audit_log).order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(min(limit, MAX_PAGE))
        if action:
            query = query.where(audit_log.c.action == action)
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        if workspace is not None:
            query = query.where(audit_log.c.workspace == workspace)
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        out = []
        for row in rows:
            entry = {str(k): v for k, v in row._mapping.items()}
            at: datetime = entry["at"]
            entry["at"] = (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).isoformat()
            out.append(entry)
        return out
