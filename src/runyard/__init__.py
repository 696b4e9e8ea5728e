"""Runyard: a self-hosted AI inference platform — SDK, gateway server and embedded mode over one core."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    ConnectionError,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RunyardError,
    ServiceUnavailableError,
    TimeoutError,
    UpstreamError,
    ValidationError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .client import AsyncClient, Client


def __getattr__(name: str) -> Any:
    # The SDK is imported on first use so that `runyard serve` does not load httpx.
    if name in ("Client", "AsyncClient"):
        from . import client

        return getattr(client, name)
    raise AttributeError(name)


__all__ = [
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "ConnectionError",
    "InternalServerError",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RunyardError",
    "ServiceUnavailableError",
    "TimeoutError",
    "UpstreamError",
    "ValidationError",
    "__version__",
]
