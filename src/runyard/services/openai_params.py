"""Parameters of OpenAI requests that Runyard cannot honour, refused in OpenAI's error shape."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequestError


class UnsupportedParameterError(InvalidRequestError):
    """A 400 naming the offending parameter (``error.param``, as OpenAI's errors do)."""

    def __init__(self, message: str, *, param: str, code: str = "unsupported_parameter") -> None:
        super().__init__(message, code=code, details={"param": param})
        self.param = param

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["error"]["param"] = self.param
        return out


def invalid(message: str, param: str, code: str = "invalid_value") -> UnsupportedParameterError:
    """A 400 for a value that is malformed (not merely unsupported)."""
    return UnsupportedParameterError(message, param=param, code=code)


def check_chat_params(extra: dict[str, Any] | None, n: Any = None) -> None:
    """Refuse what a chat completion cannot give back: several choices, token log-probabilities.

    Runyard's chat result is one answer without log-probabilities (every provider, fallbacks
    included, must be able to serve a request), so these are refused rather than dropped."""
    extra = extra or {}
    n = extra.get("n", n)
    if n is not None and n != 1:
        raise UnsupportedParameterError(
            "n > 1 is not supported: Runyard returns one choice per request; send n requests", param="n"
        )
    if extra.get("logprobs"):
        raise UnsupportedParameterError("logprobs are not supported by Runyard's chat surface", param="logprobs")
    if extra.get("top_logprobs"):
        raise UnsupportedParameterError("top_logprobs is not supported (no logprobs)", param="top_logprobs")
