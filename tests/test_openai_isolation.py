"""The OpenAI surface with API keys on, over a real ``runyard serve``: every new route needs a
key; stored responses, OpenAI files and batches are workspace-isolated (another workspace gets
the same 404 as an unknown id, and never sees them listed); responses are priced and limited
like every inference.

Keys A and C are in workspace ``acme``, B in ``other``."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from support.gateway import GatewayProcess
from test_limits import ADMIN_KEY, CALL_COST, PROMPT, add_key, config_toml

MODEL = "priced"  # dummy::echo with a price (tests/test_limits.py)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    root = tmp_path_factory.mktemp("openai-isolation")
    path = root / "runyard.toml"
    path.write_text(config_toml(root / "runyard.db"))
    keys = {name: add_key(path, name, workspace=ws)[1] for name, ws in (("a", "acme"), ("c", "acme"), ("b", "other"))}
    keys["limited"] = add_key(path, "limited", rpm_sync=2)[1]
    keys["admin"] = ADMIN_KEY
    process = GatewayProcess(path).start()
    try:
        yield process, keys
    finally:
        process.stop()


def client(gw: tuple[GatewayProcess, dict[str, str]], who: str) -> openai.OpenAI:
    process, keys = gw
    return openai.OpenAI(base_url=process.url + "/v1", api_key=keys[who], max_retries=0)


@pytest.fixture(scope="module")
def owned(gw: tuple[GatewayProcess, dict[str, str]]) -> dict[str, Any]:
    """A stored response, a batch input file and a batch, created by key A."""
    a = client(gw, "a")
    response = a.responses.create(model=MODEL, input=PROMPT)
    line = {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}}  # fmt: skip
    upload = a.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")
    batch = a.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    return {"response": response, "file": upload.id, "batch": batch.id}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/responses"),
        ("GET", "/v1/responses/resp_x"),
        ("GET", "/v1/files"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches"),
        ("POST", "/v1/moderations"),
        ("POST", "/v1/completions"),
    ],
)
def test_every_route_needs_a_key(gw: tuple[GatewayProcess, dict[str, str]], method: str, path: str) -> None:
    resp = httpx.request(method, gw[0].url + path, json={})
    assert resp.status_code == 401


def test_other_workspace_sees_nothing(gw: tuple[GatewayProcess, dict[str, str]], owned: dict[str, Any]) -> None:
    b = client(gw, "b")
    response_id = owned["response"].id
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(response_id)
    with pytest.raises(openai.NotFoundError):
        b.responses.input_items.list(response_id)
    with pytest.raises(openai.NotFoundError):
        b.responses.delete(response_id)
    with pytest.raises(openai.BadRequestError) as err:
        b.responses.create(model=MODEL, input="x", previous_response_id=response_id)
    assert err.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        b.files.retrieve(owned["file"])
    with pytest.raises(openai.NotFoundError):
        b.files.delete(owned["file"])
    assert owned["file"] not in [f.id for f in b.files.list()]
    with pytest.raises(openai.BadRequestError):
        b.batches.create(input_file_id=owned["file"], endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        b.batches.retrieve(owned["batch"])
    with pytest.raises(openai.NotFoundError):
        b.batches.cancel(owned["batch"])
    assert owned["batch"] not in [x.id for x in b.batches.list()]


@pytest.mark.parametrize("who", ["c", "admin"])
def test_same_workspace_and_operator_see_them(
    gw: tuple[GatewayProcess, dict[str, str]], owned: dict[str, Any], who: str
) -> None:
    other = client(gw, who)
    assert other.responses.retrieve(owned["response"].id).output_text == f"echo: {PROMPT}"
    assert other.files.retrieve(owned["file"]).purpose == "batch"
    assert owned["file"] in [f.id for f in other.files.list()]
    assert other.batches.retrieve(owned["batch"]).input_file_id == owned["file"]
    assert owned["batch"] in [x.id for x in other.batches.list()]


def test_responses_are_priced_recorded_and_limited(
    gw: tuple[GatewayProcess, dict[str, str]], owned: dict[str, Any]
) -> None:
    process = gw[0]
    extra = owned["response"].model_extra["x_runyard"]
    assert extra["cost"] == pytest.approx(CALL_COST)
    admin = httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    row: dict[str, Any] = {}
    for _ in range(100):
        got = admin.get(f"/v1/inferences/{extra['inference_id']}")
        if got.status_code == 200:
            row = got.json()
            break
        time.sleep(0.05)
    assert row["cost"] == pytest.approx(CALL_COST) and row["output"]["content"] == f"echo: {PROMPT}"
    limited = client(gw, "limited")
    with pytest.raises(openai.RateLimitError):
        for _ in range(3):  # rpm_sync = 2
            limited.responses.create(model=MODEL, input="x")
