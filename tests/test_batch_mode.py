"""Infrai's ``ai.chat(..., batch_mode=True)`` (seed 003, issue 20 item 23): the chat goes through
the provider's Batch API (an uploaded JSONL, ``/v1/batches``, polled, its output file read), is
priced at the catalog's batch price and recorded at that cost; a batch that ends badly is a typed
task error; an upstream without a Batch API answers live at the live price.

The upstream is an OpenAI-compatible aiohttp server on 127.0.0.1 (support/batch_upstream.py); each
test runs embedded and over HTTP against a real ``runyard serve``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from runyard.client import AsyncClient
from runyard.config import parse_config
from runyard.errors import TaskFailedError
from support.batch_upstream import BatchUpstream
from support.gateway import client_for

LIVE = {"input": 2.0, "output": 8.0}
PRICE = {**LIVE, "batch": {"input": 1.0, "output": 4.0}}  # the batch API at half the live price
LIVE_COST = (1000 * 2.0 + 500 * 8.0) / 1e6  # the upstream's usage: 1000 prompt, 500 completion tokens
BATCH_COST = (1000 * 1.0 + 500 * 4.0) / 1e6


@pytest.fixture
async def upstream() -> AsyncIterator[BatchUpstream]:
    async with BatchUpstream() as server:
        yield server


def _config(tmp_path: Path, upstream: BatchUpstream) -> dict[str, Any]:
    return {
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path}/r.db", "recording": "sync"},
        "files": {"dir": str(tmp_path / "files")},
        "catalog": {"defaults": False},
        "providers": {
            "up": {"kind": "openai", "base_url": upstream.url + "/v1", "options": {"batch_poll_interval_s": 0.05}},
            "nobatch": {"kind": "openai", "base_url": upstream.url + "/nobatch/v1"},
        },
        "models": {
            "gpt-x": {"routes": ["up::gpt-x"], "price": PRICE},
            "no-batch-api": {"routes": ["nobatch::gpt-x"], "price": PRICE},
            **{name: {"routes": [f"up::{name}"], "price": PRICE} for name in ("fail-x", "expire-x", "reject-x")},
        },
    }


@pytest.fixture(params=["embedded", "http"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: BatchUpstream, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncClient]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with client_for(request.param, _config(tmp_path, upstream), tmp_path) as c:
        yield c


async def _inference(client: AsyncClient, inference_id: str) -> dict[str, Any]:
    """The recorded inference, read back through the API (recording is sync: it is in)."""
    row: dict[str, Any] = await client.request("GET", f"/v1/inferences/{inference_id}")
    return row


async def test_batch_mode_goes_through_the_batch_api_at_the_batch_price(
    client: AsyncClient, upstream: BatchUpstream
) -> None:
    upstream.hold = True  # the batch stays in_progress: the task waits, showing it
    task = await client.ai.chat("Tell me a 50-word story about a curious raccoon.", model="gpt-x", batch_mode=True)
    for _ in range(200):
        await task.reload()
        if any(line.endswith(": in_progress") for line in task.logs):
            break
        await asyncio.sleep(0.05)
    assert task.status == "processing" and f"batch {next(iter(upstream.batches))}: in_progress" in task.logs
    upstream.hold = False
    done = await task.wait(polling_interval=0.05, timeout=30)
    out = done.output
    assert out["content"] == "batched: a raccoon"
    assert upstream.live == []  # no live chat call: a batch
    [batch] = upstream.batches.values()
    assert (batch["endpoint"], batch["completion_window"]) == ("/v1/chat/completions", "24h")
    assert batch["status"] == "completed"
    line = json.loads(upstream.files[batch["input_file_id"]]["content"])
    assert (line["method"], line["url"], line["body"]["model"]) == ("POST", "/v1/chat/completions", "gpt-x")
    assert upstream.files[batch["input_file_id"]]["purpose"] == "batch"
    assert out["batch_id"] == out["metadata"]["batch_id"] == batch["id"]
    assert out["usage"]["input_tokens"] == 1000 and out["usage"]["output_tokens"] == 500
    assert out["cost"] == pytest.approx(BATCH_COST) and out["metadata"]["cost"] == pytest.approx(BATCH_COST)
    recorded = await _inference(client, out["inference_id"])
    assert recorded["cost"] == pytest.approx(BATCH_COST)
    assert recorded["tags"]["batch_id"] == batch["id"]
    live = await client.ai.chat("Tell me a 50-word story about a curious raccoon.", model="gpt-x")
    assert live.content == "live: a raccoon" and len(upstream.live) == 1
    live_recorded = await _inference(client, str(live.inference_id))
    assert live_recorded["cost"] == pytest.approx(LIVE_COST)
    assert recorded["cost"] == pytest.approx(live_recorded["cost"] / 2)  # half the live price


async def test_cancelling_the_task_cancels_the_upstream_batch(client: AsyncClient, upstream: BatchUpstream) -> None:
    upstream.hold = True
    task = await client.ai.chat("hi", model="gpt-x", batch_mode=True)
    for _ in range(200):
        if upstream.batches and upstream.batches[next(iter(upstream.batches))]["polls"]:
            break
        await asyncio.sleep(0.05)
    await task.cancel()
    with pytest.raises(TaskFailedError):
        await task.wait(polling_interval=0.05, timeout=30)
    assert task.status == "cancelled"
    assert upstream.cancelled == list(upstream.batches) and upstream.live == []


@pytest.mark.parametrize(
    ("model", "code"),
    [("fail-x", "batch_failed"), ("expire-x", "batch_expired"), ("reject-x", "upstream_rejected_request")],
)
async def test_a_batch_that_ends_badly_is_a_typed_task_error(
    client: AsyncClient, upstream: BatchUpstream, model: str, code: str
) -> None:
    task = await client.ai.chat("hi", model=model, batch_mode=True)
    with pytest.raises(TaskFailedError) as err:
        await task.wait(polling_interval=0.05, timeout=30)
    assert err.value.code == code
    assert next(iter(upstream.batches.values()))["id"] in err.value.message
    assert upstream.live == []


async def test_an_upstream_without_a_batch_api_answers_live_at_the_live_price(
    client: AsyncClient, upstream: BatchUpstream
) -> None:
    task = await client.ai.chat("hi", model="no-batch-api", batch_mode=True)
    out = (await task.wait(polling_interval=0.05, timeout=30)).output
    assert out["content"] == "live: a raccoon" and len(upstream.live) == 1 and upstream.batches == {}
    assert out["batch_id"] is None
    assert (await _inference(client, out["inference_id"]))["cost"] == pytest.approx(LIVE_COST)


def test_the_shipped_catalog_prices_batches_at_half() -> None:
    models = parse_config({}).models
    for name in ("gpt-4o-mini", "gpt-4.1", "claude-sonnet-4"):
        price = models[name].price
        assert price is not None and price.batch is not None
        assert (price.batch.input, price.batch.output) == (price.input / 2, price.output / 2)
