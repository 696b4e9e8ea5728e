"""Standard Webhooks (https://www.standardwebhooks.com): how Runyard signs the webhooks it sends,
and :func:`verify` for receivers.

Each delivery carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` (several, space-separated,
during a secret rotation). The secret is ``whsec_<base64 key>``; any other string is used as the key
bytes (UTF-8) as it is.

    from runyard.webhooks import verify, WebhookVerificationError
    try:
        event = verify(secret, request.body, request.headers)  # the raw body, as received
    except WebhookVerificationError:
        return 400
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["DEFAULT_TOLERANCE_S", "WebhookVerificationError", "generate_secret", "sign", "signing_key", "verify"]

DEFAULT_TOLERANCE_S = 300  # a delivery older (or newer) than this is refused as a replay
SECRET_PREFIX = "whsec_"


class WebhookVerificationError(Exception):
    """The delivery is not authentic, or is outside the replay window."""


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (other strings: their UTF-8 bytes)."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX) :])
    return secret.encode()


def generate_secret(size: int = 32) -> str:
    import secrets

    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(size)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(signing_key(secret), content, hashlib.sha256).digest()).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def verify(
    secret: str,
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> Any:
    """Check a delivery's signature and freshness; its JSON payload if both hold.

    Raises :class:`WebhookVerificationError` for a missing or wrong signature, or a timestamp more
    than ``tolerance_s`` from ``now`` (a replay). Compare ``webhook-id`` with the ids already seen
    to drop duplicates inside the window."""
    raw = body.encode() if isinstance(body, str) else body
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance window (replay?)")
    expected = sign(secret, msg_id, timestamp, raw).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return orjson.loads(raw) if raw else None
    raise WebhookVerificationError("no matching signature")
