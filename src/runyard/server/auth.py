"""Who is calling: an API key, a signed protocol's caller, or (keys off) the client's address.

:class:`Authenticator` runs once per request, for every route but :data:`PUBLIC_PATHS`: it
fills ``scope["state"]`` (``api_key_id``, ``api_key``, ``signed_caller``) and returns the
caller's limits policy, or raises :class:`AuthenticationError` (:func:`auth_refusal` renders it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Scope

from ..errors import AuthenticationError
from ..gateway import Gateway
from ..services.auth import ApiKeyAuth
from ..services.limits import LimitService, Policy
from .http import error_response, header
from .openapi.docs import DOC_PATHS

# A signed protocol's authenticator: (protocol caller id, key id for usage, policy), None for its
# unsigned URLs, or AuthenticationError. See routes/speedpix.py.
SignedAuth = Callable[[Gateway, Scope], Awaitable["tuple[str, str, Policy] | None"]]

# Probes (load balancers, orchestrators), the API description and its docs page: public.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", *DOC_PATHS})


class Authenticator:
    """API keys (when configured), per-app signatures of the signed protocols (by path prefix),
    and, with keys off and ``limits.unauthenticated = "per_ip"``, a policy per client address."""

    def __init__(
        self, gateway: Gateway, auth: ApiKeyAuth, limits: LimitService, *, per_ip: bool, signed: dict[str, SignedAuth]
    ) -> None:
        self.gateway = gateway  # handed to the signed protocols' authenticators
        self.auth = auth
        self.limits = limits
        self.per_ip = per_ip
        self.signed = tuple(signed.items())  # path prefix -> authenticator
        self.signed_prefixes = tuple(signed)

    async def authenticate(self, scope: Scope, state: dict[str, Any]) -> Policy | None:
        """The caller's policy (None: no limits to apply); raises AuthenticationError."""
        path = scope["path"]
        if path in PUBLIC_PATHS:
            state["api_key_id"] = None
            return None
        if path.startswith(self.signed_prefixes) and (
            signer := next((f for p, f in self.signed if path.startswith(p)), None)
        ):
            signed = await signer(self.gateway, scope)  # a protocol whose calls are signed per app (SpeedPix)
            state["api_key_id"] = None
            if signed is None:
                return None
            state["signed_caller"], state["api_key_id"], policy = signed
            return policy
        if self.auth.enabled:
            authorization = header(scope, b"authorization")
            bearer = authorization is not None and authorization.startswith("Bearer ") and authorization[7:].strip()
            x_api_key = None if bearer else header(scope, b"x-api-key")  # a fallback: read only when needed
            try:
                key = await self.auth.lookup(authorization, x_api_key)
            except AuthenticationError as err:
                raise KeyRefused(err.message, code=err.code, details=err.details) from None
            assert key is not None
            state["api_key_id"] = key.id
            state["api_key"] = key
            return key.policy
        state["api_key_id"] = None
        if self.per_ip:
            client = scope.get("client")
            return self.limits.ip_policy(client[0] if client else "unknown")
        return None


class KeyRefused(AuthenticationError):
    """A missing or unknown API key: answered with the ``WWW-Authenticate: Bearer`` challenge."""


def auth_refusal(err: AuthenticationError) -> Response:
    """The 401 for ``err`` (with the Bearer challenge for a refused API key)."""
    response = error_response(err)
    if isinstance(err, KeyRefused):
        response.headers["WWW-Authenticate"] = "Bearer"
    return response
