"""The mock OpenAI upstream behaves as scripted, over real HTTP (plain httpx)."""

from __future__ import annotations

import base64
import json
import struct
import time
from typing import Any

import httpx
import pytest

from support.openai_mock import B, MockOpenAI


def chat_body(text: Any = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **extra}


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"units": {"type": "integer"}, "city": {"type": "string"}},
            "required": ["units", "city"],
        },
    },
}


def sse_events(text: str) -> list[str]:
    assert text.endswith("\n\n")
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    return [e[len("data: ") :] for e in events]


def test_non_stream_echo(mock_openai: MockOpenAI) -> None:
    r = httpx.post(
        f"{mock_openai.url}/chat/completions",
        json=chat_body(),
        headers={"Authorization": "Bearer sk-test"},
    )
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "gpt-test"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "echo: hello there", "refusal": None}
    assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0

    [req] = mock_openai.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == "Bearer sk-test"
    assert req["json"]["model"] == "gpt-test"


def test_content_parts_and_tool_result(mock_openai: MockOpenAI) -> None:
    parts = [{"type": "text", "text": "a "}, {"type": "text", "text": "b"}]
    r = httpx.post(f"{mock_openai.url}/chat/completions", json=chat_body(parts))
    assert r.json()["choices"][0]["message"]["content"] == "echo: a b"

    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    r = httpx.post(
        f"{mock_openai.url}/chat/completions",
        json={"model": "m", "messages": messages, "tools": [WEATHER_TOOL]},
    )
    assert r.json()["choices"][0]["message"]["content"] == "tool said: sunny"


def test_stream_ends_with_done_and_usage(mock_openai: MockOpenAI) -> None:
    body = chat_body("one two three four", stream=True, stream_options={"include_usage": True})
    with httpx.stream("POST", f"{mock_openai.url}/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content_pieces = [
        c["choices"][0]["delta"].get("content") for c in chunks if c["choices"] and c["choices"][0]["delta"]
    ]
    assert len([p for p in content_pieces if p]) >= 4
    assert "".join(p or "" for p in content_pieces) == "echo: one two three four"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_tool_call_non_stream_and_stream(mock_openai: MockOpenAI) -> None:
    body = chat_body("weather in Paris?", tools=[WEATHER_TOOL])
    r = httpx.post(f"{mock_openai.url}/chat/completions", json=body)
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "call_1"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}

    r = httpx.post(f"{mock_openai.url}/chat/completions", json={**body, "stream": True})
    chunks = [json.loads(e) for e in sse_events(r.text)[:-1]]
    deltas = [c["choices"][0]["delta"].get("tool_calls") for c in chunks]
    deltas = [d[0] for d in deltas if d]
    assert deltas[0]["id"] == "call_1" and deltas[0]["function"]["name"] == "get_weather"
    assert len(deltas) > 2
    args = "".join(d["function"]["arguments"] for d in deltas)
    assert json.loads(args) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_response_formats(mock_openai: MockOpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "score": {"type": "number"},
            "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "meta": {"type": "object"},
            "unused": {"type": "string"},
        },
        "required": ["name", "age", "score", "ok", "tags", "meta"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema, "strict": True}}
    r = httpx.post(f"{mock_openai.url}/chat/completions", json=chat_body(response_format=fmt))
    content = json.loads(r.json()["choices"][0]["message"]["content"])
    assert content == {"name": "x", "age": 1, "score": 1.0, "ok": True, "tags": [], "meta": {}}

    r = httpx.post(f"{mock_openai.url}/chat/completions", json=chat_body(response_format={"type": "json_object"}))
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"ok": True}


def test_embeddings_and_models(mock_openai: MockOpenAI) -> None:
    r = httpx.post(f"{mock_openai.url}/embeddings", json={"model": "e", "input": ["a", "b"]})
    data = r.json()
    assert [d["index"] for d in data["data"]] == [0, 1]
    vec_a = data["data"][0]["embedding"]
    assert len(vec_a) == 8 and all(isinstance(x, float) for x in vec_a)
    assert data["usage"]["prompt_tokens"] == data["usage"]["total_tokens"] > 0

    r = httpx.post(f"{mock_openai.url}/embeddings", json={"model": "e", "input": "a", "dimensions": 3})
    [single] = r.json()["data"]
    assert len(single["embedding"]) == 3
    assert single["embedding"] == vec_a[:3]  # deterministic per input

    r = httpx.post(f"{mock_openai.url}/embeddings", json={"model": "e", "input": "a", "encoding_format": "base64"})
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert struct.unpack("<8f", raw) == pytest.approx(vec_a, abs=1e-6)

    r = httpx.get(f"{mock_openai.url}/models")
    assert r.json()["object"] == "list" and r.json()["data"][0]["object"] == "model"


def test_status_429_with_header_then_default(mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.status(429, headers={"retry-after": "1"}), B.status(500, body={"x": 1}))
    url = f"{mock_openai.url}/chat/completions"
    r = httpx.post(url, json=chat_body())
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"
    r = httpx.post(url, json=chat_body())
    assert r.status_code == 500 and r.json() == {"x": 1}
    r = httpx.post(url, json=chat_body())
    assert r.status_code == 200
    assert len(mock_openai.requests) == 3


def test_hang_is_cut_by_client_timeout_and_server_keeps_serving(mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.hang(30))
    url = f"{mock_openai.url}/chat/completions"
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=chat_body(), timeout=0.5)
    assert time.monotonic() - started < 5
    r = httpx.post(url, json=chat_body("next"), timeout=5)
    assert r.json()["choices"][0]["message"]["content"] == "echo: next"


def test_delay_and_reply(mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.delay(0.2), B.reply("fixed", tool_calls=[{"name": "f", "arguments": {"a": 1}}]))
    url = f"{mock_openai.url}/chat/completions"
    started = time.monotonic()
    r = httpx.post(url, json=chat_body("slow"))
    assert time.monotonic() - started >= 0.2
    assert r.json()["choices"][0]["message"]["content"] == "echo: slow"
    r = httpx.post(url, json=chat_body())
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == "fixed"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}
    assert choice["finish_reason"] == "tool_calls"


def test_drop_mid_stream_closes_without_done(mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.drop_mid_stream(after_chunks=2))
    body = chat_body("one two three four five", stream=True)
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", f"{mock_openai.url}/chat/completions", json=body, timeout=5) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line:
                    received.append(line)
    assert received, "some chunks arrive before the drop"
    assert "data: [DONE]" not in received
    assert len(received) == 3  # role chunk + 2 content chunks
    assert all('"finish_reason": null' in line for line in received)

    # the server is fine afterwards
    r = httpx.post(f"{mock_openai.url}/chat/completions", json=chat_body(), timeout=5)
    assert r.status_code == 200


def test_drop_non_stream(mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.drop_mid_stream())
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{mock_openai.url}/chat/completions", json=chat_body(), timeout=5)


def test_malformed(mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.malformed(), B.malformed())
    url = f"{mock_openai.url}/chat/completions"
    r = httpx.post(url, json=chat_body())
    assert r.status_code == 200
    assert r.text == "{not json"
    with pytest.raises(json.JSONDecodeError):
        r.json()
    r = httpx.post(url, json=chat_body(stream=True))
    assert sse_events(r.text) == ["{not json", "[DONE]"]


def test_script_fifo_and_reset(mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.status(500), B.status(502))
    assert mock_openai.pending == 2
    httpx.post(f"{mock_openai.url}/chat/completions", json=chat_body())
    assert mock_openai.pending == 1
    mock_openai.reset()
    assert mock_openai.pending == 0 and mock_openai.requests == []
    r = httpx.post(f"{mock_openai.url}/chat/completions", json=chat_body())
    assert r.status_code == 200


async def test_usable_from_async_tests(mock_openai: MockOpenAI) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.post(f"{mock_openai.url}/chat/completions", json=chat_body("async"))
    assert r.json()["choices"][0]["message"]["content"] == "echo: async"


def test_stop_releases_hung_request() -> None:
    mock = MockOpenAI().start()
    mock.script(B.hang(60))
    with httpx.Client(timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
        client.post(f"{mock.url}/chat/completions", json=chat_body())
    started = time.monotonic()
    mock.stop()
    assert time.monotonic() - started < 3
