"""Logs an operator can read: text or JSON lines on stderr, an access log, and no secrets.

Every record passes a :class:`Redactor`: the values of configured secrets (provider keys,
webhook and app secrets, the metrics token) and anything shaped like a credential (bearer
tokens, ``sk-…`` keys, ``Authorization:`` headers) are replaced by ``[REDACTED]`` before
the line is written.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, Literal

import orjson

from .ids import RequestInfo

LogFormat = Literal["text", "json"]
REDACTED = "[REDACTED]"
ACCESS_LOGGER = "runyard.access"

# Credential shapes: "Bearer <token>", "Authorization: <value>", "api_key=<value>", OpenAI/Anthropic-
# style "sk-..." keys, runyard keys "ry_...".
_PATTERNS = re.compile(
    r"(?i)(?P<bearer>bearer\s+)[^\s\"',;]+"
    r"|(?P<header>(?:authorization|x-api-key|api[_-]?key|secret|token|password)\"?\s*[:=]\s*\"?)"
    r"(?:(?:bearer|basic)\s+)?[^\s\"',;}]+"
    r"|\bsk-[A-Za-z0-9_\-]{8,}"
    r"|\bry_[A-Za-z0-9_\-]{8,}"
)
MIN_SECRET_LEN = 6  # shorter configured values would redact ordinary words


class Redactor:
    """Replaces known secret values and credential-shaped text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        values = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        return _PATTERNS.sub(_keep_prefix, text)


def _keep_prefix(m: re.Match[str]) -> str:
    return (m.group("bearer") or m.group("header") or "") + REDACTED


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, and the record's ``fields``."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return self._redact(orjson.dumps(out, default=str).decode())


def configure(fmt: LogFormat, level: str, redact: Redactor) -> logging.Handler:
    """Route every ``runyard`` and uvicorn log record to stderr in ``fmt``; returns the handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel("DEBUG" if level.lower() == "trace" else level.upper())  # uvicorn's trace: DEBUG here
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


class AccessLog:
    """One line per request: method, path, status, latency, request id, key id, model, provider, tokens."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(ACCESS_LOGGER)

    def line(self, method: str, path: str, status: int, seconds: float, info: RequestInfo, key_id: str | None) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        fields = {
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(seconds * 1000, 2),
            "request_id": info.request_id,
            "key_id": key_id,
            "model": info.model,
            "provider": info.provider,
            "input_tokens": info.input_tokens,
            "output_tokens": info.output_tokens,
        }
        self._log.info(
            "%s %s %d %.1fms request_id=%s key=%s model=%s provider=%s tokens=%d/%d",
            method, path, status, seconds * 1000, info.request_id, key_id or "-", info.model or "-",
            info.provider or "-", info.input_tokens, info.output_tokens,
            extra={"fields": fields},
        )  # fmt: skip


def secrets_of(config: Any) -> Redactor:
    """A redactor of every secret value the config holds or points at: provider keys (and their
    headers), the webhook secret, app secrets, SpeedPix apps' signing secrets."""
    values: list[str | None] = []
    for provider in config.providers.values():
        values.append(provider.api_key())
        values.extend(provider.headers.values())
    values.append(config.webhooks.secret)
    values.extend(config.apps.secrets.values())
    values.extend(_speedpix_secrets(config.apps.integrations.get("speedpix") or {}))
    return Redactor(values)


def _speedpix_secrets(integration: dict[str, Any]) -> list[str]:
    """``[apps.integrations.speedpix.apps]``: ``key = "secret"`` or ``key = {secret = ..., api_key = ...}``."""
    out = []
    for value in (integration.get("apps") or {}).values():
        secret = value.get("secret") if isinstance(value, dict) else value
        if secret:
            out.append(str(secret))
    return out
