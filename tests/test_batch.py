"""Batch mode: a chat queued as a task, and a JSONL file of 100 requests → 100 results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from runyard import Client
from runyard.config import parse_config


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    config = parse_config(
        {
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", "flush_interval_ms": 10},
            "files": {"dir": str(tmp_path / "files")},
            "models": {"priced": {"routes": ["dummy::echo"], "price": {"input": 1.0, "output": 2.0}}},
        }
    )
    with Client.embedded(config, max_retries=0) as c:
        yield c


def test_batch_mode_queues_a_task(client: Client) -> None:
    queued = client.request(
        "POST", "/v1/ai/chat", json={"messages": "later please", "model": "dummy::echo", "batch_mode": True}
    )
    assert queued["status"] in ("queued", "processing", "completed") and queued["app"].startswith("runyard/chat@")
    task = client.tasks.get(queued["id"]).wait(polling_interval=0.1)
    assert task.status == "completed"
    assert task.output["content"] == "echo: later please"
    via_sdk = client.ai.chat("sdk batch", model="dummy::echo", batch_mode=True)
    assert via_sdk.wait(polling_interval=0.1).output["content"] == "echo: sdk batch"


def test_batch_file_of_100_requests(client: Client, tmp_path: Path) -> None:
    lines = [
        {"custom_id": f"r{i}", "body": {"model": "priced", "messages": [{"role": "user", "content": f"n{i}"}]}}
        for i in range(99)
    ]
    lines.append(
        {"custom_id": "bad", "body": {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}}
    )
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    uploaded = client.files.upload(path)
    queued = client.request("POST", "/v1/ai/batch", json={"input_file": uploaded.uri, "concurrency": 8})
    task = client.tasks.get(queued["id"]).wait(polling_interval=0.1)
    assert task.status == "completed", task.error
    assert (task.output["total"], task.output["succeeded"], task.output["failed"]) == (100, 99, 1)
    results = [orjson.loads(x) for x in task.output["results"].read().splitlines()]
    assert [r["custom_id"] for r in results] == [line["custom_id"] for line in lines]
    assert results[5]["response"]["content"] == "echo: n5"
    assert results[5]["response"]["cost"] > 0
    assert results[-1]["error"]["code"] == "model_not_found"
