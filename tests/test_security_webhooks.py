"""Webhooks signed the Standard Webhooks way, checked with the reference algorithm (re-implemented
here from the specification, https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md)
and with the documented verifier, ``runyard.webhooks.verify``, whose replay window refuses old deliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator

import pytest

from runyard.config import WebhooksConfig
from runyard.services.webhooks import SIGNATURE_HEADER, WebhookSender
from runyard.webhooks import WebhookVerificationError, generate_secret, verify
from support.tasks_e2e import WebhookReceiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the specification's example secret


def reference_verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """The specification's verification, step by step, independent of runyard's code."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, timestamp = lowered["webhook-id"], lowered["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    to_sign = f"{msg_id}.{timestamp}.{body.decode()}".encode()
    expected = base64.b64encode(hmac.new(key, to_sign, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(signature, expected)
        for version, _, signature in (part.partition(",") for part in lowered["webhook-signature"].split(" "))
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    rec = WebhookReceiver().start()
    try:
        yield rec
    finally:
        rec.stop()


async def _deliver(receiver: WebhookReceiver, secret: str) -> dict[str, object]:
    sender = WebhookSender(WebhooksConfig(secret=secret, allow_private_webhooks=True, max_attempts=1, timeout_s=5))
    try:
        assert await sender.deliver(receiver.url + "/hook", {"id": "task-1", "status": "completed", "output": "ü"})
    finally:
        await sender.aclose()
    (request,) = receiver.wait_for(1)
    return request


async def test_deliveries_verify_with_the_reference_algorithm(receiver: WebhookReceiver) -> None:
    request = await _deliver(receiver, SECRET)
    headers, body = request["headers"], request["body"]
    assert isinstance(headers, dict) and isinstance(body, bytes)
    assert reference_verify(SECRET, headers, body)
    assert headers["webhook-id"].startswith("msg_") and headers["webhook-signature"].startswith("v1,")
    assert not reference_verify(SECRET, headers, body.replace(b"task-1", b"task-2"))  # tampered body
    assert verify(SECRET, body, headers) == {"id": "task-1", "status": "completed", "output": "ü"}
    assert SIGNATURE_HEADER in headers  # the old header, for one release


async def test_the_verifier_refuses_replays_forgeries_and_missing_headers(receiver: WebhookReceiver) -> None:
    request = await _deliver(receiver, SECRET)
    headers, body = request["headers"], request["body"]
    assert isinstance(headers, dict) and isinstance(body, bytes)
    stamp = int(headers["webhook-timestamp"])
    verify(SECRET, body, headers, now=stamp + 299)  # inside the window
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(SECRET, body, headers, now=stamp + 301)  # replayed later
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(SECRET, body, headers, now=stamp - 301)  # from the future
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify(generate_secret(), body, headers)  # another secret
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify(SECRET, body + b" ", headers)
    with pytest.raises(WebhookVerificationError, match="webhook-id"):
        verify(SECRET, body, {k: v for k, v in headers.items() if k.lower() != "webhook-id"})


async def test_a_plain_string_secret_is_its_utf8_bytes(receiver: WebhookReceiver) -> None:
    request = await _deliver(receiver, "plain-secret")
    headers, body = request["headers"], request["body"]
    assert isinstance(headers, dict) and isinstance(body, bytes)
    as_whsec = "whsec_" + base64.b64encode(b"plain-secret").decode()
    assert reference_verify(as_whsec, headers, body)
    assert verify("plain-secret", body, headers)["id"] == "task-1"


def test_signature_rotation_any_matching_signature_passes() -> None:
    from runyard.webhooks import sign

    body, stamp = b'{"a":1}', int(time.time())
    old, new = generate_secret(), generate_secret()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": f"{sign(old, 'msg_1', stamp, body)} {sign(new, 'msg_1', stamp, body)}",
    }
    assert verify(old, body, headers) == {"a": 1} and verify(new, body, headers) == {"a": 1}
