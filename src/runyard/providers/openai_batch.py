"""``batch_mode`` through an OpenAI-compatible Batch API (mixed into :class:`OpenAIProvider`).

One chat becomes a one-line JSONL uploaded to ``POST {base}/files`` (purpose ``batch``), a
``POST {base}/batches`` (``/v1/chat/completions``, window ``24h``), polled at
``GET {base}/batches/{id}`` every ``options.batch_poll_interval_s`` (10 s) until it ends; the
answer is read from ``GET {base}/files/{output_file_id}/content``. A failed, expired or cancelled
batch, or an error line, is a typed error. An upstream without ``batch`` in its declared
``options.capabilities``, or that answers 404/405 to the upload (no Batch API, e.g. Ollama), is
called live instead: same answer, live price, no ``batch_id``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from ..config import ProviderConfig
from ..errors import RunyardError, TimeoutError, UpstreamError
from ..inference import ChatOutcome, ChatRequest
from .base import upstream_status_error
from .http import UpstreamClient, endpoint

log = logging.getLogger("runyard.providers")

BatchProgress = Callable[[float, str], None]
CHAT_ENDPOINT = "/v1/chat/completions"
_RUNNING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
_ENDED_BADLY = {"failed": "batch_failed", "expired": "batch_expired", "cancelled": "batch_cancelled"}


class OpenAIBatchMixin:
    name: str
    config: ProviderConfig
    _http: UpstreamClient

    if TYPE_CHECKING:  # the provider's own

        def supports(self, capability: str) -> bool: ...
        def _body(self, request: ChatRequest, model: str, stream: bool) -> bytes: ...
        def parse_chat(self, data: Any, model: str) -> ChatOutcome: ...
        async def chat(self, request: ChatRequest, model: str) -> ChatOutcome: ...

    def _batch_url(self, path: str) -> Any:
        return endpoint(self.config.base_url or "https://api.openai.com/v1", path)

    async def batch_chat(self, request: ChatRequest, model: str, progress: BatchProgress | None = None) -> ChatOutcome:
        """The chat as a one-line batch job; its outcome carries ``batch_id``."""
        if not self.supports("batch"):
            return await self.chat(request, model)
        custom_id = "runyard-" + secrets.token_hex(8)
        line = {
            "custom_id": custom_id,
            "method": "POST",
            "url": CHAT_ENDPOINT,
            "body": orjson.loads(self._body(request, model, False)),
        }
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field(
            "file", orjson.dumps(line) + b"\n", filename="runyard-batch.jsonl", content_type="application/jsonl"
        )
        status, body, headers = await self._http.call("POST", self._batch_url("/files"), form)
        if status in (404, 405):
            log.info("%s: no batch API at the upstream (HTTP %s on /files): batch_mode runs live", self.name, status)
            return await self.chat(request, model)
        file_id = self._field(self._ok(status, body, headers), "id")
        create = {"input_file_id": file_id, "endpoint": CHAT_ENDPOINT, "completion_window": "24h"}
        batch = self._ok(
            *await self._http.call("POST", self._batch_url("/batches"), orjson.dumps(create), "application/json")
        )
        batch_id = self._field(batch, "id")
        try:
            batch = await self._wait(batch, batch_id, progress)
        except BaseException:  # cancelled (``progress`` raises when the task is), or polling failed
            await self._cancel(batch_id)
            raise
        outcome = await self._answer(batch, batch_id, custom_id, model)
        outcome.batch_id = batch_id
        return outcome

    async def _wait(self, batch: dict[str, Any], batch_id: str, progress: BatchProgress | None) -> dict[str, Any]:
        interval = float(self.config.options.get("batch_poll_interval_s", 10.0))
        while batch.get("status") in _RUNNING:
            if progress is not None:
                counts = batch.get("request_counts") or {}
                done = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
                total = int(counts.get("total") or 0) or 1
                progress(min(done / total, 0.99), f"batch {batch_id}: {batch.get('status')}")
            await asyncio.sleep(interval)
            batch = self._ok(*await self._http.call("GET", self._batch_url(f"/batches/{batch_id}")))
        return batch

    async def _answer(self, batch: dict[str, Any], batch_id: str, custom_id: str, model: str) -> ChatOutcome:
        status = batch.get("status")
        if status != "completed":
            errors = (batch.get("errors") or {}).get("data") or []
            reason = "; ".join(str(e.get("message") or e) for e in errors if isinstance(e, dict)) or "no reason given"
            code = _ENDED_BADLY.get(str(status), "batch_failed")
            cls = TimeoutError if code == "batch_expired" else UpstreamError
            raise cls(f"{self.name}: batch {batch_id} ended {status}: {reason}", code=code)
        for key in ("output_file_id", "error_file_id"):
            file_id = batch.get(key)
            if not file_id:
                continue
            raw = await self._http.call("GET", self._batch_url(f"/files/{file_id}/content"))
            for text in self._ok_bytes(*raw).splitlines():
                item = _json(text) if text.strip() else None
                if isinstance(item, dict) and item.get("custom_id") == custom_id:
                    return self._line_outcome(item, batch_id, model)
        raise UpstreamError(f"{self.name}: batch {batch_id} completed without our line", code="batch_failed")

    def _line_outcome(self, item: dict[str, Any], batch_id: str, model: str) -> ChatOutcome:
        response = item.get("response") or {}
        error = item.get("error")
        status = int(response.get("status_code") or (500 if error else 200))
        if error or status >= 300:
            body = orjson.dumps(response.get("body") or {"error": error})
            raise upstream_status_error(f"{self.name} (batch {batch_id})", status, body)
        return self.parse_chat(response.get("body"), model)

    async def _cancel(self, batch_id: str) -> None:
        """Best effort: a cancelled task cancels its upstream batch."""
        try:
            await asyncio.shield(
                asyncio.wait_for(self._http.call("POST", self._batch_url(f"/batches/{batch_id}/cancel")), 5)
            )
        except (RunyardError, asyncio.TimeoutError, asyncio.CancelledError):
            log.info("%s: could not cancel batch %s upstream", self.name, batch_id)

    def _ok(self, status: int, body: bytes, headers: Any = None) -> dict[str, Any]:
        data = _json(self._ok_bytes(status, body, headers))
        if not isinstance(data, dict):
            raise UpstreamError(f"{self.name}: unreadable batch API answer", code="upstream_invalid_response")
        return data

    def _ok_bytes(self, status: int, body: bytes, headers: Any = None) -> bytes:
        if status >= 300:
            raise upstream_status_error(self.name, status, body, headers)
        return body

    def _field(self, data: dict[str, Any], key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise UpstreamError(f"{self.name}: batch API answer without {key!r}", code="upstream_invalid_response")
        return value


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
