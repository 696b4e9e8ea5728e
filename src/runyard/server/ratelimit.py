"""Limits at the HTTP edge: authenticate, admit (or refuse with 429), add X-RateLimit-* headers.

:class:`Guard` authenticates; for a caller with limits it classifies the request (see
:func:`runyard.services.limits.classify`) and admits it or answers 429. The
``X-RateLimit-Limit/Remaining/Reset`` headers (integers; Reset in epoch seconds) go on every
response — errors and streams included: :class:`AuthLimitMiddleware` (pure ASGI) wraps
``send`` for them, the app's hot routes add them to the response they send. Routes that only
know a request's kind after reading its body (``POST /v1/runs``: async unless it waits) call
:func:`enforce`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AuthenticationError, RateLimitError
from ..gateway import Gateway
from ..services.limits import DEFERRED, NOT_METERED, Policy, classify, retry_after_header
from .http import error_response, gateway, header
from .openapi.docs import DOC_PATHS

# A signed protocol's authenticator: (protocol caller id, key id for usage, policy), None for its
# unsigned URLs, or AuthenticationError. See routes/speedpix.py.
SignedAuth = Callable[[Gateway, Scope], Awaitable["tuple[str, str, Policy] | None"]]

PUBLIC_PATHS = frozenset({"/healthz", *DOC_PATHS})  # the API description and its docs page: public


class Guard:
    """Authentication (every route but ``/healthz`` when API keys are configured) and admission
    under the caller's limits: one implementation for :class:`AuthLimitMiddleware` and the app's
    hot routes (server/app.py)."""

    def __init__(self, gateway: Gateway, signed: dict[str, SignedAuth] | None = None) -> None:
        self.signed = tuple((signed or {}).items())  # path prefix -> authenticator
        self.signed_prefixes = tuple(signed or ())
        self.gateway = gateway
        self.auth = gateway.auth
        self.limits = gateway.limits
        self.per_ip = gateway.config.limits.unauthenticated == "per_ip"

    async def admit(self, scope: Scope) -> Response | None:
        """Fill ``scope["state"]`` (``api_key_id``, ``api_key``; with limits ``limit_policy`` and
        ``rate_limit``, the X-RateLimit-* headers) and return None; or the refusal to send."""
        state = scope.setdefault("state", {})
        path = scope["path"]
        policy = None
        if path in PUBLIC_PATHS:
            state["api_key_id"] = None
        elif path.startswith(self.signed_prefixes) and (
            signer := next((f for p, f in self.signed if path.startswith(p)), None)
        ):
            try:  # a protocol whose calls are signed with a per-app secret (SpeedPix)
                signed = await signer(self.gateway, scope)
            except AuthenticationError as err:
                return error_response(err)
            state["api_key_id"] = None
            if signed is not None:
                state["signed_caller"], state["api_key_id"], policy = signed
        elif self.auth.enabled:
            authorization = header(scope, b"authorization")
            bearer = authorization is not None and authorization.startswith("Bearer ") and authorization[7:].strip()
            x_api_key = None if bearer else header(scope, b"x-api-key")  # a fallback: read only when needed
            try:
                key = await self.auth.lookup(authorization, x_api_key)
            except AuthenticationError as err:
                response = error_response(err)
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
            assert key is not None
            state["api_key_id"] = key.id
            state["api_key"] = key
            policy = key.policy
        else:
            state["api_key_id"] = None
            if self.per_ip:
                client = scope.get("client")
                policy = self.limits.ip_policy(client[0] if client else "unknown")
        if policy is None or not policy.limited:
            return None
        state["limit_policy"] = policy
        kind = classify(scope["method"], path)
        try:
            state["rate_limit"] = await self.limits.check(policy, NOT_METERED if kind == DEFERRED else kind)
        except RateLimitError as err:
            return _refusal(err)
        return None


class AuthLimitMiddleware:
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


def _refusal(err: RateLimitError) -> Response:
    response = error_response(err)
    response.headers["Retry-After"] = retry_after_header(err.retry_after).decode()
    response.raw_headers.extend(err.headers)
    return response


async def enforce(request: Request, kind: int) -> None:
    """Admit one request of ``kind`` (SYNC/ASYNC) for the caller; raises 429 RateLimitError.

    For routes the middleware left undecided (DEFERRED); a no-op when the caller has no limits.
    """
    state = request.scope.get("state") or {}
    policy = state.get("limit_policy")
    if policy is None:
        return
    try:
        state["rate_limit"] = await gateway(request).limits.check(policy, kind)
    except RateLimitError as err:
        state["rate_limit"] = err.headers
        raise
