"""API-key authentication: keys are compared by hash, never kept or logged in plain text.

Keys come from the config (``server.api_keys``: operator keys, see every workspace) and
from the store (``runyard keys create``: workspace-scoped, with their own limits). Store
keys are checked every ``server.api_key_refresh_s`` (1 s) in the background — one aggregate
query, and a reload when a key was created or revoked — so a revoked key is refused within
that on a running server while a request costs one hash and one dict lookup.
A key created since the last reload is found on first use by one indexed query; unknown
keys are remembered until the next reload, so bad keys cannot hammer the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..backends.store import Store
from ..backends.usage import key_names
from ..config import LimitsConfig, hash_api_key
from ..errors import AuthenticationError, NotFoundError
from .limits import LimitService, Policy

log = logging.getLogger("runyard.auth")

MAX_REMEMBERED_MISSES = 10_000
MAX_REMEMBERED_OWNERS = 10_000


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    workspace: str | None  # None: a config key (all workspaces)
    policy: Policy

    @property
    def admin(self) -> bool:
        return self.workspace is None


class ApiKeyAuth:
    """Enabled when the config or the store holds at least one key at start."""

    def __init__(
        self,
        config_hashes: list[str],
        store: Store,
        limits: LimitService | None = None,
        *,
        refresh_s: float = 1.0,
    ) -> None:
        self._store = store
        # A bare auth (tools, tests) gets default, unlimited policies.
        self._limits = limits if limits is not None else LimitService(LimitsConfig(), store)
        self._config_keys = {h: self._config_key(h) for h in config_hashes}
        self._known: dict[str, ApiKey] = dict(self._config_keys)
        self._misses: set[str] = set()
        self.refresh_s = refresh_s
        self.enabled = bool(self._known)
        self._task: asyncio.Task[None] | None = None
        self._version: tuple[Any, ...] | None = None
        self._workspaces: dict[str, str | None] = {}  # key id -> workspace, revoked keys included

    def _config_key(self, digest: str) -> ApiKey:
        key_id = f"config:{digest[7:19]}"
        return ApiKey(key_id, key_id, None, self._limits.policy(key_id))

    def _store_key(self, row: dict[str, Any]) -> ApiKey:
        return ApiKey(row["id"], row["name"], row.get("workspace") or "default", self._limits.policy(row["id"], row))

    async def start(self) -> None:
        await self.refresh()
        self.enabled = bool(self._known)
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._refresh_loop(), name="runyard-auth-refresh")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh(self, *, force: bool = True) -> None:
        """Reload the store's active keys (revoked ones drop out). Without ``force``, only when
        the table changed since the last reload (one aggregate query otherwise)."""
        version = await self._store.api_keys_version()
        if not force and version == self._version:
            return
        rows = await self._store.load_api_keys()
        self._version = version
        known = dict(self._config_keys)
        for row in rows:
            known[row["key_hash"]] = self._store_key(row)
        self._known = known
        self._misses = set()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh(force=False)
            except Exception:
                log.warning("could not reload API keys; keeping the last set", exc_info=True)

    def keys(self) -> list[ApiKey]:
        return list(self._known.values())

    def by_id(self, key_id: str) -> ApiKey | None:
        """An active key by its id (revoked keys drop out within ``refresh_s``)."""
        return next((k for k in self._known.values() if k.id == key_id), None)

    async def workspace_of(self, key_id: str | None) -> str | None:
        """The workspace of a store key by id, revoked keys included; None for a config key or an
        unknown id. Store lookups are remembered (a key's workspace never changes)."""
        if not key_id or key_id.startswith("config:"):
            return None
        active = self.by_id(key_id)
        if active is not None:
            return active.workspace
        if key_id not in self._workspaces:
            row = (await key_names(self._store, [key_id])).get(key_id)
            if len(self._workspaces) >= MAX_REMEMBERED_OWNERS:
                self._workspaces.clear()
            self._workspaces[key_id] = (row["workspace"] or "default") if row else None
        return self._workspaces[key_id]

    async def lookup(self, authorization: str | None, x_api_key: str | None = None) -> ApiKey | None:
        """The key for these headers; raises AuthenticationError. None when auth is off."""
        if not self.enabled:
            return None
        token = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                token = value.strip()
        token = token or (x_api_key.strip() if x_api_key else None)
        if not token:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
        digest = hash_api_key(token)
        key = self._known.get(digest)
        if key is None and digest not in self._misses:
            rows = await self._store.load_api_keys(digest)
            if rows:
                key = self._known[digest] = self._store_key(rows[0])
            elif len(self._misses) < MAX_REMEMBERED_MISSES:
                self._misses.add(digest)
        if key is None:
            raise AuthenticationError("invalid API key", code="invalid_api_key")
        return key

    async def check(self, authorization: str | None, x_api_key: str | None = None) -> str | None:
        """The key id for these headers; raises AuthenticationError. None when auth is off."""
        key = await self.lookup(authorization, x_api_key)
        return key.id if key is not None else None


# -- key administration (``POST/GET/DELETE /v1/keys``, the console's Keys page) ------------------

KEY_PREFIX = "ry_"
PERIODS = ("day", "month")


class KeyLimits(BaseModel):
    """A new store key: its name, workspace and limits (None: the config's ``[limits]``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    workspace: str = Field(default="default", min_length=1, max_length=255)
    rpm_sync: int | None = Field(default=None, ge=0)
    rpm_async: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    spend_limit: float | None = Field(default=None, ge=0)
    period: Literal["day", "month"] | None = None

    @model_validator(mode="after")
    def _period_needs_spend(self) -> KeyLimits:
        if self.period is not None and self.spend_limit is None:
            raise ValueError("period needs spend_limit")
        return self


def new_key_secret() -> str:
    """A fresh secret (shown once; only its hash is stored)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(store: Store, auth: ApiKeyAuth, spec: KeyLimits) -> tuple[str, dict[str, Any]]:
    """Store a key (hashed) and reload ``auth`` so it works at once; (secret, metadata row)."""
    secret = new_key_secret()
    limits = spec.model_dump(exclude={"name", "workspace"}, exclude_none=True)
    key_id = await store.add_api_key(spec.name, hash_api_key(secret), workspace=spec.workspace, **limits)
    await auth.refresh()
    row = next(r for r in await store.list_api_keys() if r["id"] == key_id)
    return secret, row


async def revoke_key(store: Store, auth: ApiKeyAuth, key_id: str) -> dict[str, Any]:
    """Revoke by id (404 ``key_not_found`` if unknown); refused at once by this process."""
    row = await store.revoke_api_key(key_id)
    if row is None:
        raise NotFoundError(f"key {key_id} not found", code="key_not_found")
    await auth.refresh()
    return row
