"""API-key authentication: keys are compared by hash, never kept or logged in plain text."""

from __future__ import annotations

from ..backends.store import Store
from ..config import hash_api_key
from ..errors import AuthenticationError


class ApiKeyAuth:
    """Enabled when the config or the store holds at least one key at start.

    Keys added to the store later (``runyard keys create``) are found on first use.
    """

    def __init__(self, config_hashes: list[str], store: Store) -> None:
        self._known: dict[str, str] = {h: f"config:{h[7:19]}" for h in config_hashes}
        self._store = store
        self.enabled = bool(self._known)

    async def start(self) -> None:
        self._known.update(await self._store.active_api_keys())
        self.enabled = bool(self._known)

    async def check(self, authorization: str | None, x_api_key: str | None = None) -> str | None:
        """The key id for these headers; raises AuthenticationError. None when auth is off."""
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
        key_id = self._known.get(digest)
        if key_id is None:
            fresh = await self._store.active_api_keys()
            key_id = fresh.get(digest)
            if key_id is not None:
                self._known[digest] = key_id
        if key_id is None:
            raise AuthenticationError("invalid API key", code="invalid_api_key")
        return key_id
