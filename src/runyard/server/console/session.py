"""Console sessions: who is signed in, and the CSRF token every form carries.

A session is a random id in an HttpOnly, SameSite=Strict cookie (``Path=/ui``); the server
keeps, in memory, the API key it was opened with and a per-session CSRF token. Each request
checks that key again with the API's own :meth:`ApiKeyAuth.lookup`, so a revoked key ends its
sessions at once and pages see exactly what the API would show that key. Sessions live in
this process (a restart signs everyone out) and expire after ``SESSION_TTL_S`` idle.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...errors import AuthenticationError
from ...services.auth import ApiKey, ApiKeyAuth

COOKIE = "runyard_console"
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    csrf: str
    secret: str | None = None  # the API key signed in with (memory only; never logged or rendered)
    seen: float = field(default_factory=time.monotonic)
    flash: Any = None  # shown once by the next page (a new key's secret), then dropped


class SessionStore:
    """Sessions by id, oldest dropped past ``MAX_SESSIONS``."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        now = time.monotonic()
        if session is None or now - session.seen > SESSION_TTL_S:
            self._sessions.pop(session_id, None)
            return None
        session.seen = now
        return session

    def open(self, secret: str | None = None) -> Session:
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.seen)
            self._sessions.pop(oldest.id, None)
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secret)
        self._sessions[session.id] = session
        return session

    def close(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)


def set_cookie(response: Response, request: Request, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=SESSION_TTL_S,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def csrf_ok(session: Session | None, token: object) -> bool:
    """Whether a form's ``csrf`` field matches its session's token (constant-time)."""
    if session is None or not isinstance(token, str) or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())


async def key_of(auth: ApiKeyAuth, session: Session | None) -> ApiKey | None:
    """The session's key, checked now as the API checks a bearer token; None if signed out,
    unknown or revoked."""
    if session is None or session.secret is None:
        return None
    try:
        return await auth.lookup(f"Bearer {session.secret}")
    except AuthenticationError:
        session.secret = None
        return None


def loopback_bind(host: str) -> bool:
    """Whether the server listens on loopback only (the console is open there without keys)."""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
