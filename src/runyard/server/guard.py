"""The guard every request passes first: authentication (server/auth.py), then admission under
the caller's limits (server/ratelimit.py), in one call per request.

:class:`Guard` serves :class:`GuardMiddleware` (every route) and the app's hot routes
(server/app.py), which add the X-RateLimit-* headers to the response they send; the middleware
wraps ``send`` for them only when the caller has limits.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AuthenticationError
from ..gateway import Gateway
from .auth import Authenticator, SignedAuth, auth_refusal
from .ratelimit import RateLimiter

# A protocol's rewording of a refusal (path, Runyard's error response) -> the response to send.
Dialect = Callable[[str, Response], Response]


class Guard:
    """Authenticates a request and admits it under the caller's limits."""

    def __init__(
        self, authenticator: Authenticator, limiter: RateLimiter, dialects: dict[str, Dialect] | None = None
    ) -> None:
        self.authenticate = authenticator.authenticate
        self.limit = limiter.admit
        self.done = limiter.done  # call when the request ended (once admitted under limits)
        self._settle = limiter.settle
        self.dialects = tuple((dialects or {}).items())  # path prefix -> how a protocol words a refusal

    @classmethod
    def for_gateway(
        cls, gateway: Gateway, signed: dict[str, SignedAuth] | None = None, dialects: dict[str, Dialect] | None = None
    ) -> Guard:
        """The guard over ``gateway``'s API keys and limits; ``signed``: path prefix -> a signed
        protocol's authenticator; ``dialects``: path prefix -> a protocol's rewording of refusals."""
        per_ip = gateway.config.limits.unauthenticated == "per_ip"
        authenticator = Authenticator(gateway, gateway.auth, gateway.limits, per_ip=per_ip, signed=signed or {})
        return cls(authenticator, RateLimiter(gateway.limits), dialects)

    async def admit(self, scope: Scope, defer: bool = False) -> Response | None:
        r"""Fill ``scope["state"]`` (``api_key_id``, ``api_key``; with limits ``limit_policy`` and
        ``rate_limit``, the X-RateLimit-* headers) and return None; or the refusal to send.
        ``defer``: a hot call may take its admission with its cache lookup; its caller then
        calls :meth:`settle` before answering."""
        state = scope.setdefault("state", {})
        try:
            policy = await self.authenticate(scope, state)
        except AuthenticationError as err:
            return self._worded(scope, auth_refusal(err))
        if policy is None or not policy.limited:
            return None
        refusal = await self.limit(scope, state, policy, defer)
        return None if refusal is None else self._worded(scope, refusal)

    async def settle(self, scope: Scope) -> Response | None:
        """The refusal to send instead of the answer, if a deferred admission not taken yet refuses."""
        state = scope.get("state")
        if not state or "admission" not in state:
            return None
        refusal = await self._settle(state)
        return None if refusal is None else self._worded(scope, refusal)

    def _worded(self, scope: Scope, refusal: Response) -> Response:
        """``refusal`` in the words of the protocol that owns the path, if one does (refusals only)."""
        path = scope["path"]
        for prefix, dialect in self.dialects:
            if path.startswith(prefix):
                return dialect(path, refusal)
        return refusal


class GuardMiddleware:
    """Runs the :class:`Guard` before the app and puts X-RateLimit-* headers on what it sends."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = await self.guard.admit(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        state = scope["state"]
        if "limit_policy" not in state:
            await self.app(scope, receive, send)
            return

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = state.get("rate_limit")
                if extra:
                    message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_limits)
        finally:
            self.guard.done(state)
