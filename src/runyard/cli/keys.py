"""``runyard keys hash|create|list|revoke``: API keys in the configured store (no server needed)."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from typing import Any

from ..config import hash_api_key, load_config
from ._common import CliError, leaf, print_table

__all__ = ["register"]


def register(sub: Any) -> None:
    keys = leaf(sub, "keys", None, "API keys (stored hashed)")
    keys_sub = keys.add_subparsers(title="keys commands", metavar="COMMAND")
    khash = leaf(keys_sub, "hash", _keys_hash, "print the hashed form of a key for server.api_keys")
    khash.add_argument("key", nargs="?", help="the key (read from stdin if omitted)")
    kcreate = leaf(keys_sub, "create", _keys_create, "create a key in the store and print it once")
    kcreate.add_argument("--name", required=True)
    kcreate.add_argument("--workspace", default="default", help="the key sees its workspace's usage")
    kcreate.add_argument("--rpm-sync", type=_positive_int, help="sync requests per minute ([limits] window)")
    kcreate.add_argument("--rpm-async", type=_positive_int, help="async submissions (runs without wait) per minute")
    kcreate.add_argument("--tpm", type=_positive_int, help="tokens (input + output) per minute")
    kcreate.add_argument("--spend-limit", type=_non_negative_float, metavar="USD", help="spending limit per period")
    kcreate.add_argument("--period", choices=["day", "month"], help="the spending period (default from [limits])")
    kcreate.add_argument("--config")
    klist = leaf(keys_sub, "list", _keys_list, "list keys (no secrets): id, name, workspace, limits, created/revoked")
    klist.add_argument("--json", action="store_true", help="one JSON object per key (a line each)")
    klist.add_argument("--active", action="store_true", help="hide revoked keys")
    klist.add_argument("--config")
    krevoke = leaf(keys_sub, "revoke", _keys_revoke, "revoke a key; a running server refuses it within a second")
    krevoke.add_argument("key_id")
    krevoke.add_argument("--config")


def _keys_hash(args: argparse.Namespace) -> None:
    key = args.key if args.key is not None else sys.stdin.readline().strip()
    if not key:
        raise CliError("no key given", 2)
    print(hash_api_key(key))


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return n


def _non_negative_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = -1.0
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, not {value}")
    return x


def with_store(config_path: str | None, work: Any, *, create: bool = True) -> Any:
    """Run ``work(store)`` against the configured store (migrated first); no server needed.

    ``create=False``: a SQLite file that does not exist yet is not created; ``work`` gets None."""
    import asyncio

    from ..backends.store import Store

    config = load_config(config_path)
    store = Store.from_config(config.storage)
    if not create and not store.exists():
        return work(None)

    async def run() -> Any:
        try:
            await store.start()
            return await work(store)
        finally:
            await store.aclose()

    return asyncio.run(run())


def _keys_create(args: argparse.Namespace) -> None:
    key = "ry_" + secrets.token_urlsafe(32)
    limits = {
        name: getattr(args, name)
        for name in ("rpm_sync", "rpm_async", "tpm", "spend_limit", "period")
        if getattr(args, name) is not None
    }
    if "period" in limits and "spend_limit" not in limits:
        raise CliError("--period needs --spend-limit", 2)

    async def create(store: Any) -> str:
        from .audit import record

        key_id: str = await store.add_api_key(args.name, hash_api_key(key), workspace=args.workspace, **limits)
        await record(store, "key.created", key_id, {"name": args.name, "workspace": args.workspace, "limits": limits})
        return key_id

    key_id = with_store(args.config, create)
    shown = ", ".join(f"{k}={v}" for k, v in limits.items()) or "the [limits] defaults"
    print(f"created key {key_id} ({args.name}, workspace {args.workspace}, limits: {shown})")
    print(f"it is shown once, store it now:\n{key}")


def _limits_text(row: dict[str, Any]) -> str:
    parts = [f"{name}={row[name]}" for name in ("rpm_sync", "rpm_async", "tpm") if row.get(name) is not None]
    if row.get("spend_limit") is not None:
        parts.append(f"spend=${row['spend_limit']:g}/{row.get('period') or 'default period'}")
    return " ".join(parts) or "defaults"


def _keys_list(args: argparse.Namespace) -> None:
    async def listing(store: Any) -> list[dict[str, Any]]:
        return list(await store.list_api_keys(include_revoked=not args.active))

    def work(store: Any) -> Any:
        return listing(store) if store is not None else None

    rows = with_store(args.config, work, create=False)
    if rows is None:
        print("no keys: the store does not exist yet (`runyard keys create --name NAME` makes one)", file=sys.stderr)
        rows = []
    if args.json:
        for row in rows:
            print(json.dumps(row, default=str))
        return
    table = []
    for row in rows:
        created = row["created_at"].strftime("%Y-%m-%d %H:%M") if row["created_at"] else ""
        revoked = row["revoked_at"].strftime("%Y-%m-%d %H:%M") if row["revoked_at"] else ""
        table.append((row["id"], row["name"], row["workspace"], _limits_text(row), created, revoked))
    print_table(("id", "name", "workspace", "limits", "created", "revoked"), table)


def _keys_revoke(args: argparse.Namespace) -> None:
    async def revoke(store: Any) -> dict[str, Any] | None:
        from .audit import record

        row: dict[str, Any] | None = await store.revoke_api_key(args.key_id)
        if row is not None:
            await record(store, "key.revoked", row["id"], {"name": row["name"]})
        return row

    def work(store: Any) -> Any:
        return revoke(store) if store is not None else None

    row = with_store(args.config, work, create=False)
    if row is None:
        raise CliError(f"no key {args.key_id}")
    print(f"revoked key {row['id']} ({row['name']}) at {row['revoked_at']}")
