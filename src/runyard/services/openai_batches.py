"""OpenAI batches, each run as one ``runyard/chat-batch`` task (the batch engine of
``POST /v1/ai/batch``): the batch object is the task's state in OpenAI's words, and once the task
completes its results file is rewritten once as OpenAI's output and error files."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson

from ..backends.redis_lock import Locks
from ..errors import ConflictError
from .files import FileRecord, FileService
from .openai_records import OpenAIRecords
from .tasks import TaskService

BATCH_APP = "runyard/chat-batch"
CHAT_ENDPOINT = "/v1/chat/completions"
CONCURRENCY = 4
_STATUS = {"queued": "validating", "processing": "in_progress", "failed": "failed", "cancelled": "cancelled"}


class OpenAIBatches:
    """``locks``: the gateway's named locks (on Redis when replicas share the store), so a batch's
    output files are written once even when two gateways describe it as it completes."""

    def __init__(self, tasks: TaskService, files: FileService, records: OpenAIRecords, locks: Locks) -> None:
        self.tasks = tasks
        self.files = files
        self.records = records
        self.locks = locks

    async def create(
        self,
        record: FileRecord,
        total: int,
        *,
        endpoint: str,
        window: str,
        metadata: dict[str, str] | None,
        api_key_id: str | None,
    ) -> dict[str, Any]:
        task = await self.tasks.create(
            BATCH_APP, {"file": record.uri, "concurrency": CONCURRENCY}, api_key_id=api_key_id
        )
        batch_id = "batch_" + uuid.uuid4().hex
        body = {
            "endpoint": endpoint,
            "input_file_id": record.id,
            "completion_window": window,
            "metadata": metadata,
            "total": total,
            "created_at": int(datetime.now().timestamp()),
            "output_file_id": None,
            "error_file_id": None,
        }
        await self.records.add_batch(batch_id, task["id"], api_key_id, body)
        row = await self.records.get_batch(batch_id)
        assert row is not None
        return await self.describe(row)

    async def cancel(self, row: dict[str, Any]) -> dict[str, Any]:
        task = await self.tasks.get(row["task_id"])
        if task["status"] not in ("completed", "failed", "cancelled"):
            try:
                await self.tasks.cancel(row["task_id"])
            except ConflictError as err:  # it finished in between: the batch is answered as it ended
                if err.code != "task_finished":
                    raise
        return await self.describe(row)

    async def describe(self, row: dict[str, Any]) -> dict[str, Any]:
        """The batch object, its output files written first if its task has just completed."""
        task = await self.tasks.get(row["task_id"])
        body = dict(row["body"])
        if task["status"] == "completed" and body.get("output_file_id") is None:
            async with self.locks.hold("batch:" + row["id"]):
                fresh = await self.records.get_batch(row["id"])
                body = dict((fresh or row)["body"])
                if body.get("output_file_id") is None:
                    body.update(await self._write_outputs(task["output"], row["api_key_id"]))
                    await self.records.update_batch(row["id"], body)
        return _batch_object(row["id"], body, task)

    async def _write_outputs(self, output: dict[str, Any], api_key_id: str | None) -> dict[str, Any]:
        raw = await self.files.read(output["results"])
        good: list[bytes] = []
        bad: list[bytes] = []
        for line in raw.splitlines():
            item = orjson.loads(line)
            line_id = "batch_req_" + uuid.uuid4().hex
            if "error" in item:
                bad.append(
                    orjson.dumps(
                        {"id": line_id, "custom_id": item["custom_id"], "response": None, "error": item["error"]}
                    )
                )
            else:
                response = {
                    "status_code": 200,
                    "request_id": item["response"]["inference_id"],
                    "body": _completion(item["response"]),
                }
                good.append(
                    orjson.dumps({"id": line_id, "custom_id": item["custom_id"], "response": response, "error": None})
                )
        out: dict[str, Any] = {"completed": len(good), "failed": len(bad)}
        out["output_file_id"] = await self._put(good, "batch_output.jsonl", api_key_id) if good else None
        out["error_file_id"] = await self._put(bad, "batch_errors.jsonl", api_key_id) if bad else None
        return out

    async def _put(self, lines: list[bytes], filename: str, api_key_id: str | None) -> str:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"".join(line + b"\n" for line in lines)

        record = await self.files.put(chunks(), filename, "application/jsonl", api_key_id=api_key_id, max_bytes=2**40)
        await self.records.add_file(record.id, "batch_output", api_key_id)
        return record.id


def _completion(response: dict[str, Any]) -> dict[str, Any]:
    """A ``runyard/chat-batch`` result as the ``chat.completion`` OpenAI's batch output holds."""
    usage = response.get("usage") or {}
    message: dict[str, Any] = {"role": "assistant", "content": response.get("content")}
    if response.get("tool_calls"):
        message["tool_calls"] = response["tool_calls"]
    prompt, completion = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    return {
        "id": "chatcmpl-" + (response.get("inference_id") or ""),
        "object": "chat.completion",
        "created": int(datetime.now().timestamp()),
        "model": response.get("model") or "",
        "choices": [
            {"index": 0, "message": message, "finish_reason": response.get("finish_reason") or "stop", "logprobs": None}
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        "x_runyard": {
            "inference_id": response.get("inference_id"),
            "provider": response.get("provider"),
            "cost": response.get("cost"),
        },
    }


def _timestamp(iso: str | None) -> int | None:
    return int(datetime.fromisoformat(iso).timestamp()) if iso else None


def _batch_object(batch_id: str, body: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    status = task["status"]
    shown = _STATUS.get(status, "completed" if status == "completed" else "in_progress")
    if task.get("cancel_requested") and status not in ("completed", "failed", "cancelled"):
        shown = "cancelling"
    finished = _timestamp(task.get("finished_at"))
    total = int(body.get("total") or 0)
    done = {"completed": body.get("completed", 0), "failed": body.get("failed", 0)}
    errors = None
    if status == "failed":
        error = task.get("error") or {}
        errors = {
            "object": "list",
            "data": [{"code": error.get("code", "batch_failed"), "message": error.get("message", "the batch failed")}],
        }
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": body["endpoint"],
        "errors": errors,
        "input_file_id": body["input_file_id"],
        "completion_window": body["completion_window"],
        "status": shown,
        "output_file_id": body.get("output_file_id"),
        "error_file_id": body.get("error_file_id"),
        "created_at": body["created_at"],
        "in_progress_at": _timestamp(task.get("started_at")),
        "expires_at": body["created_at"] + 24 * 3600,
        "finalizing_at": finished if status == "completed" else None,
        "completed_at": finished if status == "completed" else None,
        "failed_at": finished if status == "failed" else None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": finished if status == "cancelled" else None,
        "request_counts": {"total": total, **done},
        "metadata": body.get("metadata"),
        "x_runyard": {"task_id": task["id"]},
    }
