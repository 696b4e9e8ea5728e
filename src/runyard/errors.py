"""One error hierarchy for the whole package.

The server raises these and renders them as ``{"error": {"code", "message"}}`` with the
class's HTTP status; the SDK turns such a response back into the same class. Client-side
failures (no response at all) are :class:`ConnectionError` and its :class:`TimeoutError`.
"""

from __future__ import annotations

from typing import Any


class RunyardError(Exception):
    """Base class: ``code`` is machine-readable, ``status`` the HTTP status (None if no response)."""

    status: int | None = 500
    default_code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        if status is not None:
            self.status = status
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "type": self.default_code}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r})"


class InvalidRequestError(RunyardError):
    status = 400
    default_code = "invalid_request"


class AuthenticationError(RunyardError):
    status = 401
    default_code = "unauthorized"


class PermissionDeniedError(RunyardError):
    status = 403
    default_code = "forbidden"


class NotFoundError(RunyardError):
    status = 404
    default_code = "not_found"


class ConflictError(RunyardError):
    status = 409
    default_code = "conflict"


class PayloadTooLargeError(InvalidRequestError):
    status = 413
    default_code = "payload_too_large"


class ValidationError(InvalidRequestError):
    status = 422
    default_code = "validation_error"


class CapabilityNotAvailableError(InvalidRequestError):
    """No configured provider can serve this kind of request (TTS, ASR, images, vision, ...)."""

    status = 400
    default_code = "CAPABILITY_NOT_AVAILABLE"


class GoneError(RunyardError):
    status = 410
    default_code = "gone"


class SessionNotFoundError(NotFoundError):
    """A run named a session that does not exist (or was ended)."""

    default_code = "SESSION_NOT_FOUND"


class SessionExpiredError(GoneError):
    """A run named a session that sat idle past its ``session_timeout``."""

    default_code = "SESSION_EXPIRED"


class RequirementsNotMetError(ValidationError):
    """An app's declared secrets/integrations are missing (422 ``REQUIREMENTS_NOT_MET``).

    ``errors`` lists ``{"type", "key"}`` for each missing requirement.
    """

    default_code = "REQUIREMENTS_NOT_MET"

    @property
    def errors(self) -> list[dict[str, str]]:
        return list(self.details or [])


RequirementsNotMetException = RequirementsNotMetError  # the inference.sh name


class RateLimitError(RunyardError):
    status = 429
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.headers: list[tuple[bytes, bytes]] = []  # server side: X-RateLimit-* to send with the 429


class UsageLimitError(RateLimitError):
    """A key's spending limit for the period is used up (429 ``USAGE_LIMIT_EXCEEDED``);
    ``retry_after`` is the time until the period ends."""

    default_code = "USAGE_LIMIT_EXCEEDED"


class InternalServerError(RunyardError):
    status = 500
    default_code = "internal_error"


class UpstreamError(RunyardError):
    """The model provider failed (bad status, dropped connection, unreadable answer)."""

    status = 502
    default_code = "upstream_error"


class ServiceUnavailableError(RunyardError):
    status = 503
    default_code = "unavailable"


class TimeoutError(RunyardError):
    """A timeout: 504 from the gateway (upstream too slow), or no answer in time (status None)."""

    status: int | None = 504
    default_code = "timeout"


class TaskFailedError(RunyardError):
    """A task ended ``failed`` or ``cancelled``; ``task`` is the SDK's Task, ``code`` the app's error code."""

    status = None
    default_code = "task_failed"

    def __init__(self, message: str, *, task: Any = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.task = task


class ConnectionError(RunyardError):
    """The SDK could not reach the server at all."""

    status = None
    default_code = "connection_error"


class APITimeoutError(ConnectionError, TimeoutError):
    """The SDK's request got no answer in time (a connection-level timeout)."""

    status = None
    default_code = "timeout"


_BY_STATUS: dict[int, type[RunyardError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
    500: InternalServerError,
    502: UpstreamError,
    503: ServiceUnavailableError,
    504: TimeoutError,
}


# Codes whose class is more specific than their status's (the SDK raises the same class).
_BY_CODE: dict[str, type[RunyardError]] = {
    "REQUIREMENTS_NOT_MET": RequirementsNotMetError,
    "SESSION_NOT_FOUND": SessionNotFoundError,
    "SESSION_EXPIRED": SessionExpiredError,
    "USAGE_LIMIT_EXCEEDED": UsageLimitError,
    "CAPABILITY_NOT_AVAILABLE": CapabilityNotAvailableError,
}


def error_for_status(status: int, code: str | None, message: str, details: Any = None) -> RunyardError:
    """The error class the server would have raised for this status (and code)."""
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = InvalidRequestError if 400 <= status < 500 else InternalServerError
    return cls(message, code=code, status=status, details=details)
