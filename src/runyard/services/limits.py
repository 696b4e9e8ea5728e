"""Per-key limits: requests per window (sync and async), tokens per window, spend per period.

A :class:`Policy` is a caller's effective limits (the key's own, else ``[limits]``),
resolved once when keys load, so a request costs one :meth:`LimitBackend.admit` — a GCRA
step plus, when set, a token and a spend lookup: O(1) in-process, one script call on Redis
(:mod:`runyard.backends.redis_limits`, exact across replicas). Tokens and cost are recorded
after each inference by :meth:`LimitService.observe` (an ``AIService.usage_observers``
hook). Spend survives restarts: a key's current day and month totals are read from the
inferences table before its first limited request in a process.

Which requests count (``classify``): reads (GET/HEAD/OPTIONS) and control calls
(feedback, cancel, DELETE, the usage endpoints) consume nothing and are never refused;
everything else is one *sync* request, except queued submissions, which are *async*:
``POST /v1/ai/batch``, and ``POST /v1/runs`` without ``wait`` (that route calls
:func:`runyard.server.ratelimit.enforce` once it has read the body). Rate-limit headers go
on every authenticated response whose caller has a request limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from ..backends.limits import (
    ADMITTED,
    OVER_SPEND,
    OVER_TOKENS,
    SPEND_PENDING,
    Admission,
    InProcessLimitBackend,
    LimitBackend,
    period_bounds,
)
from ..config import LimitsConfig
from ..errors import RateLimitError, UsageLimitError

if TYPE_CHECKING:
    from ..backends.store import Store

log = logging.getLogger("runyard.limits")

SYNC = 1
ASYNC = 2
NOT_METERED = 0
DEFERRED = 3  # the route decides sync/async (POST /v1/runs) and calls enforce()

Headers = list[tuple[bytes, bytes]]
_RESERVATION = "spend_reservation"  # the request state's (subject, reservation) while in flight
_PENDING = "admission"  # the request state's PendingAdmission (LimitService.defer)

_NOT_METERED_PATHS = frozenset(
    {
        "/v1/feedback",
        "/feedback",
        "/v1/usage",
        "/v1/usage/limits",
        # SpeedPix polls and upload signing are reads in all but method
        "/scc/comfy_get_progress",
        "/scc/comfy_get_result",
        "/scc/sp_create_temp_file_upload_sign",
    }
)
_DEFERRED_PATHS = frozenset({"/v1/runs"})
# Calls whose admission, on a backend that can, is taken with their cache lookup (LimitService.defer)
CACHED_PATHS = frozenset({"/v1/chat/completions"})
_ASYNC_PATHS = frozenset({"/v1/ai/batch", "/scc/comfy_prompt"})  # queued submissions whatever the body says
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def classify(method: str, path: str) -> int:
    """How a request counts: NOT_METERED, SYNC, ASYNC or DEFERRED (remembered per method and path)."""
    kind = _classified.get((method, path))
    if kind is None:
        kind = _classify(method, path)
        if len(_classified) >= 4096:  # paths with ids in them: keep the memo bounded
            _classified.clear()
        _classified[(method, path)] = kind
    return kind


_classified: dict[tuple[str, str], int] = {}


def _classify(method: str, path: str) -> int:
    if method in _READS or method == "DELETE" or path in _NOT_METERED_PATHS or path.endswith("/cancel"):
        return NOT_METERED
    if path in _DEFERRED_PATHS or (path.endswith("/execute") and "/workflows/" in path):  # workflow runs
        return DEFERRED
    if path in _ASYNC_PATHS:
        return ASYNC
    return SYNC


@dataclass(frozen=True, slots=True)
class Policy:
    """A caller's effective limits (None: unlimited)."""

    subject: str  # the key id, or "ip:<address>"
    rpm_sync: int | None
    rpm_async: int | None
    tpm: int | None
    spend_limit: float | None
    period: Literal["day", "month"]
    plan: str
    rk_sync: str
    rk_async: str
    limited: bool  # any limit at all
    tracked: bool  # tokens and cost are attributed to this subject (keys, not IPs)


class LimitService:
    def __init__(self, config: LimitsConfig, store: Store | None, backend: LimitBackend | None = None) -> None:
        self.config = config
        self.window_s = config.window_s
        self.store = store
        self.backend: LimitBackend = backend or InProcessLimitBackend(horizon_s=config.window_s)
        self._seeded: set[str] = set()
        self._seeding: dict[str, asyncio.Future[None]] = {}
        self._ip_policies: dict[str, Policy] = {}

    # -- policies ---------------------------------------------------------------
    def policy(self, subject: str, overrides: Mapping[str, Any] | None = None, *, tracked: bool = True) -> Policy:
        c = self.config
        o = overrides or {}

        def pick(name: str) -> Any:
            value = o.get(name)
            return getattr(c, name) if value is None else value

        rpm_sync, rpm_async, tpm, spend = pick("rpm_sync"), pick("rpm_async"), pick("tpm"), pick("spend_limit")
        own = any(o.get(n) is not None for n in ("rpm_sync", "rpm_async", "tpm", "spend_limit"))
        return Policy(
            subject=subject,
            rpm_sync=rpm_sync,
            rpm_async=rpm_async,
            tpm=tpm if tracked else None,
            spend_limit=spend if tracked else None,
            period=pick("period"),
            plan="custom" if own else c.plan,
            rk_sync=subject + ":s",
            rk_async=subject + ":a",
            limited=any(v is not None for v in (rpm_sync, rpm_async, *((tpm, spend) if tracked else ()))),
            tracked=tracked,
        )

    def ip_policy(self, ip: str) -> Policy | None:
        """The per-client-IP policy of unauthenticated mode (``[limits] unauthenticated = "per_ip"``)."""
        if self.config.unauthenticated != "per_ip":
            return None
        p = self._ip_policies.get(ip)
        if p is None:
            if len(self._ip_policies) > 65536:
                self._ip_policies.clear()
            p = self._ip_policies[ip] = self.policy("ip:" + ip, tracked=False)
        return p if p.limited else None

    # -- the hot path -------------------------------------------------------------
    async def check(self, p: Policy, kind: int, state: dict[str, Any] | None = None) -> Headers:
        """Admit one request of ``kind`` (SYNC/ASYNC; NOT_METERED only peeks) and return the
        rate-limit headers; raises RateLimitError (RATE_LIMIT_EXCEEDED, USAGE_LIMIT_EXCEEDED)
        with ``headers`` set. One backend call (on Redis, one round trip). Under a spend limit
        the admitted request holds a reservation in ``state`` until :meth:`release`."""
        if kind == ASYNC:
            limit, rk = p.rpm_async, p.rk_async
        else:
            limit, rk = p.rpm_sync, p.rk_sync
        if kind == NOT_METERED:
            return await self._peek_headers(limit, rk) if limit is not None else []
        if p.spend_limit is not None and p.subject not in self._seeded:
            await self.seed(p.subject)
        a = await self.backend.admit(p.subject, rk, limit, self.window_s, p.tpm, p.spend_limit, p.period)
        return self._verdict(p, kind, limit, a, state)

    def defer(self, p: Policy, kind: int, state: dict[str, Any]) -> PendingAdmission | None:
        """Leave a SYNC request's admission to the call that looks its answer up in the shared
        cache (``state["admission"]``), which takes both in one round trip; None when the backend
        cannot (in process). One nobody took is taken before the answer leaves (:meth:`settle`)."""
        if kind != SYNC or not self.backend.reads_with_admit:
            return None
        pending = state[_PENDING] = PendingAdmission(self, p, state)
        return pending

    async def settle(self, state: dict[str, Any]) -> None:
        """Take the request's deferred admission if its call did not (an invalid body, a replayed
        idempotent answer): raises the 429 RateLimitError, as the guard would have."""
        pending: PendingAdmission | None = state.get(_PENDING)
        if pending is not None and not pending.taken:
            await pending.take()

    async def _take(self, p: Policy, state: dict[str, Any], reads: list[str]) -> list[bytes | None]:
        if p.spend_limit is not None and p.subject not in self._seeded:
            await self.seed(p.subject)
        a, values = await self.backend.admit_reading(
            reads, p.subject, p.rk_sync, p.rpm_sync, self.window_s, p.tpm, p.spend_limit, p.period
        )
        try:
            state["rate_limit"] = self._verdict(p, SYNC, p.rpm_sync, a, state)
        except RateLimitError as err:
            state["rate_limit"] = err.headers
            raise
        return values

    def _verdict(self, p: Policy, kind: int, limit: int | None, a: Admission, state: dict[str, Any] | None) -> Headers:
        """The headers of an admitted request (its reservation kept in ``state``), or the refusal raised."""
        headers = _headers(limit, a.remaining, a.reset) if limit is not None else []
        if a.verdict == ADMITTED:
            if a.reservation is not None:
                if state is None:  # nobody would give it back: at once, then
                    self.backend.release(p.subject, a.reservation)
                else:
                    state[_RESERVATION] = (p.subject, a.reservation)
            return headers
        err: RateLimitError
        if a.verdict == OVER_TOKENS:
            err = RateLimitError(
                f"token limit exceeded: {a.tokens} of {p.tpm} tokens used in the last {self.window_s:g}s",
                code="RATE_LIMIT_EXCEEDED",
                retry_after=a.usage_reset,
            )
            headers = [*headers, (b"x-ratelimit-limit-tokens", str(p.tpm).encode())]
        elif a.verdict == SPEND_PENDING:
            err = UsageLimitError(
                f"usage limit nearly reached: ${a.cost:.4f} of ${p.spend_limit:g} spent this {p.period}, "
                "and requests in flight may spend the rest; retry when they finish",
                code="USAGE_LIMIT_EXCEEDED",
                retry_after=1.0,
            )
        elif a.verdict == OVER_SPEND:
            err = UsageLimitError(
                f"usage limit exceeded: ${a.cost:.4f} of ${p.spend_limit:g} spent this {p.period}",
                code="USAGE_LIMIT_EXCEEDED",
                retry_after=a.period_reset,
            )
        else:
            kind_name = "sync" if kind == SYNC else "async"
            err = RateLimitError(
                f"rate limit exceeded: {limit} {kind_name} requests per {self.window_s:g}s",
                code="RATE_LIMIT_EXCEEDED",
                retry_after=a.reset,
            )
        err.headers = headers
        raise err

    def release(self, state: dict[str, Any]) -> None:
        """The request admitted with ``state`` ended (its usage recorded): give back its spend
        reservation, if it holds one."""
        held = state.pop(_RESERVATION, None)
        if held is not None:
            self.backend.release(*held)

    async def _usage(self, subject: str, period: float | Literal["day", "month"]) -> tuple[int, float, float]:
        return await self.backend.get_usage(subject, period)

    async def _peek(self, limit: int, rk: str) -> tuple[bool, int, float]:
        return await self.backend.hit(rk, limit, self.window_s, 0)

    async def _peek_headers(self, limit: int, rk: str) -> Headers:
        _, remaining, reset = await self._peek(limit, rk)
        return _headers(limit, remaining, reset)

    # -- accounting -------------------------------------------------------------
    def observe(self, ctx: Any, result: Any) -> None:
        """``AIService.usage_observers`` hook: charge the key with the inference's tokens and cost."""
        key = ctx.api_key_id
        if key is None:
            return
        usage = result.usage
        tokens = 0 if getattr(result, "cache_hit", False) else usage.input_tokens + usage.output_tokens
        self.backend.add_usage(key, tokens, result.cost or 0.0)

    async def seed(self, subject: str) -> None:
        """Load the key's spend this day and month from the inferences table (once per process)."""
        fut = self._seeding.get(subject)
        if fut is None:
            fut = self._seeding[subject] = asyncio.ensure_future(self._load(subject))
        try:
            await asyncio.shield(fut)
        except Exception:
            self._seeding.pop(subject, None)  # try again on the next request; fail open meanwhile
            log.warning("could not load the spend of key %s; its spend limit counts from now", subject, exc_info=True)

    async def _load(self, subject: str) -> None:
        if self.store is not None:
            from ..backends.usage import key_largest_cost, key_spend

            now = time.time()
            month_start = datetime.fromtimestamp(period_bounds("month", now)[1], timezone.utc)
            day_start = datetime.fromtimestamp(period_bounds("day", now)[1], timezone.utc)
            spend = await key_spend(self.store, subject, month_start, day_start)
            month_cost, day_cost, month_tokens, day_tokens = spend
            largest = await key_largest_cost(self.store, subject, month_start)  # after a restart too
            await self.backend.seed_usage(subject, "month", month_tokens, month_cost, largest)
            await self.backend.seed_usage(subject, "day", day_tokens, day_cost, largest)
        self._seeded.add(subject)

    # -- reporting --------------------------------------------------------------
    async def snapshot(self, p: Policy | None, auth_type: str) -> dict[str, Any]:
        """The ``GET /v1/usage/limits`` body (Sim's ``get_usage_limits()`` shape)."""
        now = time.time()
        if p is None:
            unlimited = _rate_status(None, 0, 0.0, now)
            return {
                "success": True,
                "rateLimit": {"sync": unlimited, "async": unlimited, "authType": auth_type},
                "usage": {"currentPeriodCost": 0.0, "limit": None, "plan": self.config.plan},
            }
        rate: dict[str, Any] = {}
        for name, limit, rk in (("sync", p.rpm_sync, p.rk_sync), ("async", p.rpm_async, p.rk_async)):
            if limit is None:
                rate[name] = _rate_status(None, 0, 0.0, now)
            else:
                _, remaining, reset = await self._peek(limit, rk)
                rate[name] = _rate_status(limit, remaining, reset, now)
        rate["authType"] = auth_type
        rate["windowSeconds"] = self.window_s
        usage: dict[str, Any] = {"currentPeriodCost": 0.0, "limit": p.spend_limit, "plan": p.plan, "period": p.period}
        if p.tracked:
            if p.tpm is not None:
                tokens, _, reset = await self._usage(p.subject, self.window_s)
                status = _rate_status(p.tpm, max(0, p.tpm - tokens), reset, now)
                status["isLimited"] = tokens >= p.tpm
                rate["tokens"] = status
            if p.subject not in self._seeded:
                await self.seed(p.subject)
            tokens, cost, reset = await self._usage(p.subject, p.period)
            usage.update(currentPeriodCost=round(cost, 10), tokens=tokens, resetAt=_iso(now + reset))
            usage["isExceeded"] = p.spend_limit is not None and cost >= p.spend_limit
        return {"success": True, "rateLimit": rate, "usage": usage}

    async def aclose(self) -> None:
        await self.backend.aclose()


class PendingAdmission:
    """A request's admission left to be taken with its cache lookup (:meth:`LimitService.defer`)."""

    __slots__ = ("_policy", "_service", "_state", "taken")

    def __init__(self, service: LimitService, policy: Policy, state: dict[str, Any]) -> None:
        self._service, self._policy, self._state = service, policy, state
        self.taken = False

    async def take(self, reads: list[str] | None = None) -> list[bytes | None]:
        """Admit the request (raises the 429 RateLimitError) and return the values at the store
        keys ``reads``, in one round trip. Once only: check ``taken`` before asking for reads."""
        if self.taken:
            return []
        self.taken = True
        return await self._service._take(self._policy, self._state, reads or [])


def _headers(limit: int, remaining: int, reset_s: float, _now: Any = time.time, _ceil: Any = math.ceil) -> Headers:
    return [
        (b"x-ratelimit-limit", b"%d" % limit),
        (b"x-ratelimit-remaining", b"%d" % remaining),
        (b"x-ratelimit-reset", b"%d" % _ceil(_now() + reset_s)),  # epoch seconds
    ]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rate_status(limit: int | None, remaining: int, reset_s: float, now: float) -> dict[str, Any]:
    if limit is None:
        return {"isLimited": False, "limit": None, "remaining": None, "resetAt": None}
    return {"isLimited": remaining <= 0, "limit": limit, "remaining": remaining, "resetAt": _iso(now + reset_s)}


def retry_after_header(seconds: float | None) -> bytes:
    """Retry-After as whole seconds, rounded up (never early), at least 1."""
    return str(max(1, math.ceil(seconds or 0))).encode()
