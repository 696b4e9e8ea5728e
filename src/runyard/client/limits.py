"""Rate-limit and usage types of the SDK (``get_rate_limit_info``, ``get_usage_limits``, ``usage``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field

from runyard.client.types import _Model

__all__ = ["RateLimitInfo", "UsageLimits", "UsageReport", "parse_rate_limit"]

RawRateLimit = tuple[str | None, str | None, str | None, str | None]


@dataclass(frozen=True)
class RateLimitInfo:
    """The rate limit as of the last response (``X-RateLimit-*``; Sim's ``RateLimitInfo``).

    ``reset`` is epoch seconds (when the limit is whole again), ``retry_after`` whole
    seconds (set on a 429).
    """

    limit: int
    remaining: int
    reset: int
    retry_after: int | None = None


def _int(value: str | None) -> int:
    if value is None:
        return 0
    with contextlib.suppress(ValueError):
        return int(value)
    with contextlib.suppress(ValueError):
        return int(float(value))
    with contextlib.suppress(ValueError):  # ISO 8601, as some servers send Reset
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    return 0


def parse_rate_limit(raw: RawRateLimit | None) -> RateLimitInfo | None:
    if raw is None:
        return None
    limit, remaining, reset, retry_after = raw
    return RateLimitInfo(
        limit=_int(limit),
        remaining=_int(remaining),
        reset=_int(reset),
        retry_after=_int(retry_after) if retry_after is not None else None,
    )


class UsageLimits(_Model):
    """``GET /v1/usage/limits``: ``rate_limit`` is ``{"sync": {isLimited, limit, remaining,
    resetAt}, "async": {...}, "authType"}``, ``usage`` is ``{currentPeriodCost, limit, plan}``."""

    success: bool = True
    rate_limit: dict[str, Any] = Field(default_factory=dict, alias="rateLimit")
    usage: dict[str, Any] = Field(default_factory=dict)


class UsageReport(_Model):
    """``GET /v1/usage``: ``data`` has one row per group (key, model, day, provider) with
    requests, input/output/cached/reasoning tokens, cost (USD; None when unpriced),
    cache_hits and errors; ``total`` sums them."""

    object: str = "usage"
    group_by: list[str] = Field(default_factory=list)
    since: str | None = None
    until: str | None = None
    data: list[dict[str, Any]] = Field(default_factory=list)
    total: dict[str, Any] = Field(default_factory=dict)
