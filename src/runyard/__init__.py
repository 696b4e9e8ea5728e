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
    RequirementsNotMetError,
    RequirementsNotMetException,
    RunyardError,
    ServiceUnavailableError,
    SessionExpiredError,
    SessionNotFoundError,
    TaskFailedError,
    TimeoutError,
    UpstreamError,
    UsageLimitError,
    ValidationError,
)
from .files import File

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .apps import AppContext, app
    from .client import AsyncClient, Client
    from .client.default_ai import ai
    from .client.files import FileOutput, UploadedFile
    from .client.tasks import Task, async_run, run

_LAZY = {
    "ai": "client.default_ai",
    "Client": "client",
    "AsyncClient": "client",
    "run": "client.tasks",
    "async_run": "client.tasks",
    "Task": "client.tasks",
    "app": "apps",
    "AppContext": "apps",
    "FileOutput": "client.files",
    "UploadedFile": "client.files",
}


def __getattr__(name: str) -> Any:
    # The SDK is imported on first use so that `runyard serve` does not load httpx.
    # (apps too: `runyard.app` is used at import time of user modules, keep that light.)
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    raise AttributeError(name)


__all__ = [
    "APITimeoutError",
    "AppContext",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "ConnectionError",
    "File",
    "FileOutput",
    "InternalServerError",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequirementsNotMetError",
    "RequirementsNotMetException",
    "RunyardError",
    "ServiceUnavailableError",
    "SessionExpiredError",
    "SessionNotFoundError",
    "Task",
    "TaskFailedError",
    "TimeoutError",
    "UploadedFile",
    "UpstreamError",
    "UsageLimitError",
    "ValidationError",
    "__version__",
    "ai",
    "app",
    "async_run",
    "run",
]
