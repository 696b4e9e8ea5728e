"""Rate limits at the HTTP edge: admit a caller's request under its policy, or refuse it with 429.

:class:`RateLimiter` classifies a request (see :func:`runyard.services.limits.classify`) and
checks it against the caller's limits (on Redis, a chat completion's check is deferred to its
cache lookup: both in one round trip); the ``X-RateLimit-Limit/Remaining/Reset`` headers it
leaves in ``scope["state"]["rate_limit"]`` (integers; Reset in epoch seconds) go on every
response, errors and streams included (server/guard.py). Routes that only know a request's
kind after reading its body (``POST /v1/runs``: async unless it waits) call :func:`enforce`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from ..errors import RateLimitError
from ..services.limits import CACHED_PATHS, DEFERRED, NOT_METERED, LimitService, Policy, classify, retry_after_header
from .http import error_response, gateway


class RateLimiter:
    """Admission under a caller's limits (requests per minute, tokens, spend)."""

    def __init__(self, limits: LimitService) -> None:
        self.limits = limits

    async def admit(self, scope: Scope, state: dict[str, Any], policy: Policy, defer: bool = False) -> Response | None:
        """None, with ``limit_policy`` and the headers (``rate_limit``) in ``state``; or the 429.
        ``defer``: the caller settles (:meth:`settle`) a call whose admission was left to its cache lookup."""
        state["limit_policy"] = policy
        kind = classify(scope["method"], scope["path"])
        if defer and scope["path"] in CACHED_PATHS and self.limits.defer(policy, kind, state) is not None:
            return None  # taken with the cache lookup (one round trip), else by settle()
        try:
            state["rate_limit"] = await self.limits.check(policy, NOT_METERED if kind == DEFERRED else kind, state)
        except RateLimitError as err:
            return rate_limit_refusal(err)
        return None

    async def settle(self, state: dict[str, Any]) -> Response | None:
        """Before the answer leaves: a deferred admission its call did not take is taken now;
        the 429 to send instead if refused."""
        try:
            await self.limits.settle(state)
        except RateLimitError as err:
            return rate_limit_refusal(err)
        return None

    def done(self, state: dict[str, Any]) -> None:
        """The request ended: give back what its admission holds (a spend reservation)."""
        self.limits.release(state)


def rate_limit_refusal(err: RateLimitError) -> Response:
    """The 429, with ``Retry-After`` and the X-RateLimit-* headers."""
    response = error_response(err)
    response.headers["Retry-After"] = retry_after_header(err.retry_after).decode()
    response.raw_headers.extend(err.headers)
    return response


async def enforce(request: Request, kind: int) -> None:
    """Admit one request of ``kind`` (SYNC/ASYNC) for the caller; raises 429 RateLimitError.

    For routes the guard left undecided (DEFERRED); a no-op when the caller has no limits.
    """
    state = request.scope.get("state") or {}
    policy = state.get("limit_policy")
    if policy is None:
        return
    try:
        state["rate_limit"] = await gateway(request).limits.check(policy, kind, state)
    except RateLimitError as err:
        state["rate_limit"] = err.headers
        raise
