"""The guard every request passes first: authentication (server/auth.py), then admission under
the caller's limits (server/ratelimit.py), in one call per request.

:class:`Guard` serves :class:`GuardMiddleware` (every route) and the app's hot routes
(server/app.py), which add the X-RateLimit-* headers to the response they send; the middleware
wraps ``send`` for them only when the caller has limits.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AuthenticationError
from ..gateway import Gateway
from .auth import Authenticator, SignedAuth, auth_refusal
from .ratelimit import RateLimiter


class Guard:
    """Authenticates a request and admits it under the caller's limits."""

    def __init__(self, authenticator: Authenticator, limiter: RateLimiter) -> None:
        self.authenticate = authenticator.authenticate
        self.limit = limiter.admit

    @classmethod
    def for_gateway(cls, gateway: Gateway, signed: dict[str, SignedAuth] | None = None) -> Guard:
        """The guard over ``gateway``'s API keys and limits; ``signed``: path prefix -> a signed
        protocol's authenticator."""
        per_ip = gateway.config.limits.unauthenticated == "per_ip"
        authenticator = Authenticator(gateway, gateway.auth, gateway.limits, per_ip=per_ip, signed=signed or {})
        return cls(authenticator, RateLimiter(gateway.limits))

    async def admit(self, scope: Scope) -> Response | None:
        """Fill ``scope["state"]`` (``api_key_id``, ``api_key``; with limits ``limit_policy`` and
        ``rate_limit``, the X-RateLimit-* headers) and return None; or the refusal to send."""
        state = scope.setdefault("state", {})
        try:
            policy = await self.authenticate(scope, state)
        except AuthenticationError as err:
            return auth_refusal(err)
        if policy is None or not policy.limited:
            return None
        return await self.limit(scope, state, policy)


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

        await self.app(scope, receive, send_with_limits)
