"""An OpenAI-compatible upstream with a Batch API: a real aiohttp server on 127.0.0.1.

``POST /v1/files`` (multipart, purpose ``batch``), ``POST /v1/batches``, ``GET /v1/batches/{id}``
(each poll moves a batch on: validating → in_progress → its end), ``POST /v1/batches/{id}/cancel``,
``GET /v1/files/{id}/content``, and live ``POST /v1/chat/completions``. ``/nobatch/v1`` has the
live chat only (an upstream without a Batch API). The model in a batch line picks its end:
``fail-*`` failed, ``expire-*`` expired, ``reject-*`` an error line (HTTP 400); others complete.
Every answer uses 1000 prompt and 500 completion tokens.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from aiohttp import web

from support.aiohttp_loopback import AiohttpLoopback

USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}


def completion(model: str, content: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": model, "usage": USAGE,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip


class BatchUpstream(AiohttpLoopback):
    """``live`` counts live chat calls; ``files`` and ``batches`` hold what was uploaded and made;
    ``hold`` keeps batches ``in_progress`` while it is true."""

    def __init__(self) -> None:
        super().__init__()
        self.live: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.cancelled: list[str] = []
        self.hold = False  # True: batches stay in_progress
        self._ids = itertools.count(1)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/chat/completions", self.chat)
        router.add_post("/nobatch/v1/chat/completions", self.chat)
        router.add_post("/v1/files", self.upload)
        router.add_get("/v1/files/{id}/content", self.content)
        router.add_post("/v1/batches", self.create)
        router.add_get("/v1/batches/{id}", self.poll)
        router.add_post("/v1/batches/{id}/cancel", self.cancel)

    def _file(self, content: bytes, purpose: str) -> dict[str, Any]:
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = {"id": file_id, "object": "file", "purpose": purpose, "bytes": len(content),
                               "content": content}  # fmt: skip
        return {k: v for k, v in self.files[file_id].items() if k != "content"}

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.live.append(body)
        return web.json_response(completion(body["model"], "live: a raccoon"))

    async def upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        return web.json_response(self._file(upload.file.read(), str(form["purpose"])))

    async def content(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["id"])
        if found is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.Response(body=found["content"], content_type="application/jsonl")

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("input_file_id") not in self.files:
            return web.json_response({"error": {"message": "unknown input_file_id"}}, status=400)
        batch_id = f"batch_{next(self._ids)}"
        counts = {"total": 1, "completed": 0, "failed": 0}
        batch = {
            "id": batch_id,
            "object": "batch",
            "status": "validating",
            "polls": 0,
            "request_counts": counts,
            **body,
        }
        self.batches[batch_id] = batch
        return web.json_response(_shown(batch))

    async def poll(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        batch["polls"] += 1
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
        elif batch["status"] == "in_progress" and not self.hold:
            self._finish(batch)
        return web.json_response(_shown(batch))

    async def cancel(self, request: web.Request) -> web.Response:
        batch = self.batches[request.match_info["id"]]
        batch["status"] = "cancelled"
        self.cancelled.append(batch["id"])
        return web.json_response(_shown(batch))

    def _finish(self, batch: dict[str, Any]) -> None:
        line = json.loads(self.files[batch["input_file_id"]]["content"].splitlines()[0])
        model = line["body"]["model"]
        if model.startswith("fail"):
            batch["status"] = "failed"
            batch["errors"] = {"data": [{"code": "invalid_request", "message": "line 1: model not allowed"}]}
            return
        if model.startswith("expire"):
            batch["status"] = "expired"
            return
        batch["status"] = "completed"
        if model.startswith("reject"):
            error = {"error": {"message": "max_tokens is too large", "type": "invalid_request_error"}}
            out = {"custom_id": line["custom_id"], "response": {"status_code": 400, "body": error}, "error": None}
            batch["error_file_id"] = self._file(json.dumps(out).encode() + b"\n", "batch_output")["id"]
            batch["request_counts"]["failed"] = 1
            return
        answer = completion(model, "batched: a raccoon")
        out = {"id": "req-1", "custom_id": line["custom_id"], "response": {"status_code": 200, "body": answer},
               "error": None}  # fmt: skip
        batch["output_file_id"] = self._file(json.dumps(out).encode() + b"\n", "batch_output")["id"]
        batch["request_counts"]["completed"] = 1


def _shown(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k != "polls"}
