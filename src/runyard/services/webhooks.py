"""Completion webhooks: the task JSON POSTed, signed, retried with exponential backoff.

Signed the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``;
see :mod:`runyard.webhooks`, whose ``verify`` receivers call), with ``webhooks.secret``. The old
``X-Runyard-Signature: sha256=<hex>`` (HMAC-SHA256 of the raw body) is still sent, for one release.
Each attempt connects through the URL guard (:func:`guarded_session`). Deliveries run in the
background of the process that finished the task; they are not persisted, so a delivery in
progress is lost if that process stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
import uuid
from typing import Any

import orjson

from .. import webhooks as standard
from ..config import WebhooksConfig
from ..telemetry import tracing
from .urlguard import Resolver, check_url, guarded_session

log = logging.getLogger("runyard.webhooks")

SIGNATURE_HEADER = "X-Runyard-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Constant-time check of a ``X-Runyard-Signature`` header (for receivers)."""
    return hmac.compare_digest(sign(secret, body), header)


class WebhookSender:
    def __init__(self, config: WebhooksConfig, *, resolver: Resolver | None = None) -> None:
        self.config = config
        self.resolver = resolver  # how webhook hosts are looked up (None: the system's)
        self._tasks: set[asyncio.Task[bool]] = set()
        self._session: Any = None

    def send(self, url: str, task: dict[str, Any]) -> None:
        """Deliver in the background (fire and forget; failures are logged)."""
        job = asyncio.create_task(self.deliver(url, task))
        self._tasks.add(job)
        job.add_done_callback(self._tasks.discard)

    def signed_headers(self, body: bytes, event: str, *, secret: str | None = None) -> dict[str, str]:
        """Standard Webhooks headers (the same ``webhook-id`` on every retry), plus the old one;
        signed with ``secret`` (default: ``webhooks.secret``)."""
        secret = self.config.secret if secret is None else secret
        msg_id = f"msg_{uuid.uuid4().hex}"
        timestamp = int(time.time())
        return {
            "Content-Type": "application/json",
            "User-Agent": "runyard-webhooks",
            "X-Runyard-Event": event,
            "X-Runyard-Delivery": msg_id,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard.sign(secret, msg_id, timestamp, body),
            SIGNATURE_HEADER: sign(secret, body),
        }

    async def deliver(self, url: str, task: dict[str, Any]) -> bool:
        body = orjson.dumps(task)
        headers = self.signed_headers(body, f"task.{task.get('status')}")
        tracing.inject(headers)  # the task's trace continues at the receiver (when tracing)
        if self._session is None:
            self._session = guarded_session(
                allow_private=self.config.allow_private_webhooks,
                resolver=self.resolver,
                timeout_s=self.config.timeout_s,
            )
        delay = self.config.initial_backoff_s
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                await check_url(
                    url, allow_private=self.config.allow_private_webhooks, field="webhook", resolver=self.resolver
                )
                headers["webhook-timestamp"] = str(stamp := int(time.time()))  # fresh per attempt
                headers["webhook-signature"] = standard.sign(self.config.secret, headers["webhook-id"], stamp, body)
                async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                    if 200 <= resp.status < 300:
                        return True
                    problem = f"HTTP {resp.status}"
            except Exception as err:  # network errors, refused URL: retried the same way
                problem = f"{type(err).__name__}: {err}"
            log.warning("webhook %s for task %s failed (attempt %d): %s", url, task.get("id"), attempt, problem)
            if attempt < self.config.max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        return False

    async def aclose(self, grace_s: float = 2.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        for job in list(self._tasks):
            job.cancel()
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
