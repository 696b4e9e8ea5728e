"""OpenAI's files and batch workflow, moderations and legacy completions with the official
``openai`` package, unchanged, against ``runyard serve`` over the loopback mock upstream."""

from __future__ import annotations

import io
import json
import time

import httpx
import openai
import pytest

from support.gateway import GatewayProcess
from support.openai_mock import MockOpenAI


@pytest.fixture
def oai(gateway_server: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_server.url + "/v1", api_key="unused", max_retries=0)


def _jsonl(lines: list[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _request(custom_id: str, model: str, text: str) -> dict[str, object]:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def test_files_upload_list_retrieve_content_delete(oai: openai.OpenAI) -> None:
    data = _jsonl([_request("a", "gpt", "x")])
    uploaded = oai.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    assert uploaded.object == "file" and uploaded.purpose == "batch" and uploaded.bytes == len(data)
    assert uploaded.filename == "in.jsonl" and uploaded.status == "processed"
    assert uploaded.id in [f.id for f in oai.files.list()]
    assert uploaded.id in [f.id for f in oai.files.list(purpose="batch")]
    assert uploaded.id not in [f.id for f in oai.files.list(purpose="vision")]
    assert oai.files.retrieve(uploaded.id).purpose == "batch"
    assert oai.files.content(uploaded.id).read() == data
    deleted = oai.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(uploaded.id)
    assert uploaded.id not in [f.id for f in oai.files.list()]


def test_native_files_keep_their_shape(gateway_server: GatewayProcess) -> None:
    resp = httpx.post(gateway_server.url + "/v1/files", files={"file": ("n.txt", b"native")})
    assert resp.status_code == 201 and resp.json()["uri"].startswith("runyard://files/")
    got = httpx.get(f"{gateway_server.url}/v1/files/{resp.json()['id']}").json()
    assert got["sha256"] and got["size"] == 6 and "purpose" not in got


def test_bad_purpose_is_a_typed_400(gateway_server: GatewayProcess) -> None:
    resp = httpx.post(gateway_server.url + "/v1/files", files={"file": ("n.txt", b"x")}, data={"purpose": "nope"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "purpose"


def test_batch_end_to_end(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    lines = [_request(f"r{i}", "gpt", f"item {i}") for i in range(5)]
    lines.append(_request("bad", "no-such-model", "x"))
    batch_file = oai.files.create(file=("b.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
    batch = oai.batches.create(
        input_file_id=batch_file.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert batch.object == "batch" and batch.input_file_id == batch_file.id and batch.metadata == {"job": "nightly"}
    assert batch.request_counts is not None and batch.request_counts.total == 6
    deadline = time.monotonic() + 30
    while batch.status not in ("completed", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.1)
        batch = oai.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (5, 1)
    assert batch.output_file_id and batch.error_file_id
    results = [json.loads(x) for x in oai.files.content(batch.output_file_id).text.splitlines()]
    assert [r["custom_id"] for r in results] == [f"r{i}" for i in range(5)]
    body = results[2]["response"]["body"]
    assert results[2]["response"]["status_code"] == 200
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "echo: item 2"
    errors = [json.loads(x) for x in oai.files.content(batch.error_file_id).text.splitlines()]
    assert errors[0]["custom_id"] == "bad" and errors[0]["error"]["code"] == "model_not_found"
    assert batch.id in [b.id for b in oai.batches.list()]
    assert oai.batches.retrieve(batch.id).output_file_id == batch.output_file_id  # written once


def test_batch_cancel(oai: openai.OpenAI, gateway_server: GatewayProcess) -> None:
    lines = [_request(f"r{i}", "gpt", "x") for i in range(3)]
    batch_file = oai.files.create(file=("c.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
    batch = oai.batches.create(input_file_id=batch_file.id, endpoint="/v1/chat/completions", completion_window="24h")
    cancelled = oai.batches.cancel(batch.id)
    assert cancelled.status in ("cancelling", "cancelled", "completed")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input_file_id": "f", "endpoint": "/v1/embeddings", "completion_window": "24h"}, "endpoint"),
        ({"input_file_id": "f", "endpoint": "/v1/chat/completions", "completion_window": "1h"}, "completion_window"),
        ({"input_file_id": "nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
    ],
)
def test_bad_batch_is_a_typed_400(gateway_server: GatewayProcess, body: dict[str, str], param: str) -> None:
    resp = httpx.post(gateway_server.url + "/v1/batches", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param


def test_batch_file_lines_are_checked(oai: openai.OpenAI) -> None:
    wrong_url = dict(_request("a", "gpt", "x"), url="/v1/embeddings")
    for content in (b"not json\n", _jsonl([wrong_url]), _jsonl([_request("a", "gpt", "x")] * 2)):
        f = oai.files.create(file=("l.jsonl", io.BytesIO(content)), purpose="batch")
        with pytest.raises(openai.BadRequestError) as err:
            oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert err.value.code == "invalid_batch_line"
    other = oai.files.create(file=("v.jsonl", io.BytesIO(_jsonl([_request("a", "gpt", "x")]))), purpose="user_data")
    with pytest.raises(openai.BadRequestError):
        oai.batches.create(input_file_id=other.id, endpoint="/v1/chat/completions", completion_window="24h")


@pytest.mark.parametrize(
    "path,query,message",
    [
        ("/v1/batches", "limit=0", "limit must be an integer from 1 to 100"),
        ("/v1/batches", "limit=%2B5", "limit must be an integer from 1 to 100"),  # digits only
        ("/v1/batches", "limit=%C2%B2", "limit must be an integer from 1 to 100"),  # "²" is a digit, not an int
        ("/v1/files", "order=up", "order must be 'asc' or 'desc'"),
        ("/v1/files", "limit=10001", "limit must be an integer from 1 to 10000"),
        ("/v1/files", "purpose=x", "purpose must be one of assistants, batch, fine-tune, vision, user_data, evals, "
         "batch_output"),
    ],
)  # fmt: skip
def test_bad_list_query_is_a_typed_400(gateway_server: GatewayProcess, path: str, query: str, message: str) -> None:
    resp = httpx.get(f"{gateway_server.url}{path}?{query}")
    error = resp.json()["error"]
    assert (resp.status_code, error["code"], error["message"]) == (400, "invalid_value", message)
    assert error["param"] == query.split("=")[0]
    # The spec describes the same bounds (one pydantic model validates and describes the query).
    spec = httpx.get(gateway_server.url + "/openapi.json").json()
    params = {p["name"]: p["schema"] for p in spec["paths"][path]["get"]["parameters"]}
    assert params["limit"]["maximum"] == int(message.rsplit(" ", 1)[1]) if "limit" in query else "limit" in params


def test_list_query_pages(oai: openai.OpenAI, gateway_server: GatewayProcess) -> None:
    for i in range(3):
        oai.files.create(file=(f"p{i}.jsonl", io.BytesIO(b"{}\n")), purpose="user_data")
    url = gateway_server.url + "/v1/files"
    every = httpx.get(url, params={"purpose": "user_data", "order": "asc"}).json()
    ids = [f["id"] for f in every["data"]]
    assert len(ids) >= 3 and not every["has_more"]
    first = httpx.get(url, params={"purpose": "user_data", "order": "asc", "limit": "2"}).json()
    assert [f["id"] for f in first["data"]] == ids[:2] and first["has_more"] and first["last_id"] == ids[1]
    rest = httpx.get(url, params={"purpose": "user_data", "order": "asc", "after": first["last_id"]}).json()
    assert [f["id"] for f in rest["data"]] == ids[2:]


def test_unknown_batch_is_404(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_nope")


def test_moderations_forwarded(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    resp = oai.moderations.create(input=["a calm day", "plan the attack"], model="omni-moderation-latest")
    assert [r.flagged for r in resp.results] == [False, True]
    assert mock_openai.last_request["path"].endswith("/moderations")
    assert mock_openai.last_request["json"]["model"] == "omni-moderation-latest"
    routed = oai.moderations.create(input="attack", model="gpt")  # a Runyard model: its provider, its model name
    assert routed.results[0].flagged and mock_openai.last_request["json"]["model"] == "gpt-test"


def test_moderations_bad_input(gateway_server: GatewayProcess) -> None:
    resp = httpx.post(gateway_server.url + "/v1/moderations", json={"inputs": "x"})
    assert resp.status_code in (400, 422) and resp.json()["error"]["code"]
    resp = httpx.post(gateway_server.url + "/v1/moderations", json={"input": "x", "model": "dummy::echo"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"


def test_legacy_completions(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    resp = oai.completions.create(model="gpt", prompt="complete me", max_tokens=20)
    assert resp.object == "text_completion" and resp.choices[0].text == "echo: complete me"
    assert resp.usage is not None and resp.usage.completion_tokens > 0
    assert mock_openai.last_request["json"]["messages"] == [{"role": "user", "content": "complete me"}]
    stream = oai.completions.create(
        model="gpt", prompt="stream me now", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: stream me now"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt", "prompt": ["a", "b"]}, "prompt"),
        ({"model": "gpt", "prompt": "a", "echo": True}, "echo"),
        ({"model": "gpt", "prompt": "a", "n": 2}, "n"),
        ({"model": "gpt", "prompt": "a", "logprobs": 3}, "logprobs"),
    ],
)
def test_legacy_completions_refuse_what_they_cannot_honour(
    gateway_server: GatewayProcess, body: dict[str, object], param: str
) -> None:
    resp = httpx.post(gateway_server.url + "/v1/completions", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param


@pytest.mark.parametrize(("extra", "param"), [({"n": 3}, "n"), ({"logprobs": True}, "logprobs")])
def test_chat_refuses_n_and_logprobs(oai: openai.OpenAI, extra: dict[str, object], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}], **extra)  # type: ignore[call-overload]
    assert err.value.param == param


def test_chat_passes_parallel_tool_calls(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    oai.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "x"}], tools=[tool], parallel_tool_calls=False, n=1
    )
    assert mock_openai.last_request["json"]["parallel_tool_calls"] is False
