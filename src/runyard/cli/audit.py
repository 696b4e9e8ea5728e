"""``runyard audit``: read the audit log from the store (no server needed); and how the CLI's own
admin actions (``runyard keys create/revoke``) are recorded."""

from __future__ import annotations

import argparse
import getpass
import json
from typing import TYPE_CHECKING, Any

from ._common import leaf

if TYPE_CHECKING:
    from ..backends.store import Store

# The store and the audit table are imported when a command uses them: every ``runyard`` command
# builds this parser, and ``serve --workers``' supervisor would carry SQLAlchemy (14 MB) for nothing.

__all__ = ["record", "register"]


def register(sub: Any, with_store: Any) -> None:
    def run(args: argparse.Namespace) -> None:
        def work(store: Any) -> Any:
            from ..services.audit import AuditLog

            if store is None:  # no store yet: nothing was recorded
                return _nothing()
            return AuditLog(store).entries(limit=max(1, args.limit), action=args.action)

        for entry in with_store(args.config, work, create=False):
            if args.json:
                print(json.dumps(entry, default=str))
            else:
                target = f" {entry['target']}" if entry["target"] else ""
                details = json.dumps(entry["details"] or {})
                print(f"{entry['at']}  {entry['actor']}  {entry['action']}{target}  {details}")

    p = leaf(sub, "audit", run, "the audit log: admin actions, who and when (newest first)")
    p.add_argument("--limit", type=int, default=50, help="entries to show (at most one page of the log)")
    p.add_argument("--action", help="only this action, e.g. key.created")
    p.add_argument("--json", action="store_true", help="one JSON object per entry")
    p.add_argument("--config")


async def _nothing() -> list[dict[str, Any]]:
    return []


def cli_actor() -> str:
    """The actor of an action taken with the CLI: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


async def record(store: Store, action: str, target: str, details: dict[str, Any]) -> None:
    from ..services.audit import AuditLog

    await AuditLog(store).record(action, actor=cli_actor(), target=target, details=details)
