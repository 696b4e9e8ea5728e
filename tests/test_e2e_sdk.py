"""End to end through the SDK, over both transports: HTTP to a real ``runyard serve``
subprocess, and embedded (the gateway in-process). Upstreams are real mock HTTP servers."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from runyard import Client, InvalidRequestError, NotFoundError, ValidationError
from support.gateway import GatewayProcess
from support.openai_mock import MockOpenAI

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
        },
    },
}


@pytest.mark.parametrize("model,provider", [("gpt", "mock"), ("claude", "claude")])
def test_chat(sdk_client: Client, mock_openai: MockOpenAI, mock_anthropic: object, model: str, provider: str) -> None:
    result = sdk_client.ai.chat("hello there", model=model, temperature=0.2, max_tokens=50)
    assert result.content == "echo: hello there"
    assert result.provider == provider
    assert result.finish_reason == "stop"
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    uuid.UUID(result.inference_id)
    uuid.UUID(result.episode_id)
    if provider == "mock":
        sent = mock_openai.last_request
        assert sent["json"]["model"] == "gpt-test"
        assert sent["json"]["temperature"] == 0.2
        assert sent["headers"]["authorization"] == "Bearer sk-upstream-test"


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_chat_stream(sdk_client: Client, mock_openai: MockOpenAI, mock_anthropic: object, model: str) -> None:
    chunks = list(sdk_client.ai.chat("stream these words please", model=model, stream=True))
    text = "".join(c.delta.content or "" for c in chunks)
    assert text == "echo: stream these words please"
    assert len([c for c in chunks if c.delta.content]) > 1, "the answer must arrive in pieces"
    assert chunks[-1].finish_reason == "stop"
    assert len({c.inference_id for c in chunks}) == 1


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_tools_round_trip(sdk_client: Client, mock_openai: MockOpenAI, mock_anthropic: object, model: str) -> None:
    messages: list[dict] = [{"role": "user", "content": "weather in Paris?"}]
    first = sdk_client.ai.chat(messages, model=model, tools=[WEATHER])
    assert first.finish_reason == "tool_calls"
    call = first.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"})
    second = sdk_client.ai.chat(messages, model=model, tools=[WEATHER])
    assert second.content == "tool said: 18C and sunny"


def test_tools_stream(sdk_client: Client, mock_openai: MockOpenAI) -> None:
    chunks = list(sdk_client.ai.chat("weather?", model="gpt", tools=[WEATHER], stream=True))
    args = "".join(tc.function.arguments or "" for c in chunks for tc in (c.delta.tool_calls or []))
    names = [tc.function.name for c in chunks for tc in (c.delta.tool_calls or []) if tc.function.name]
    assert names == ["get_weather"]
    assert json.loads(args) == {"city": "Paris"}
    assert chunks[-1].finish_reason == "tool_calls"


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_json_schema(sdk_client: Client, mock_openai: MockOpenAI, mock_anthropic: object, model: str) -> None:
    result = sdk_client.ai.chat("who?", model=model, response_format=SCHEMA)
    data = json.loads(result.content or "")
    assert set(data) == {"name", "age"}
    assert isinstance(data["age"], int)
    if model == "gpt":
        assert mock_openai.last_request["json"]["response_format"] == SCHEMA


def test_embeddings(sdk_client: Client, mock_openai: MockOpenAI) -> None:
    result = sdk_client.ai.embed.create(["first text", "second text"], model="embed")
    assert len(result.embeddings) == 2
    assert all(len(v) == 8 for v in result.embeddings)
    assert result.embeddings[0] != result.embeddings[1]
    single = sdk_client.ai.embed.create("first text", model="embed", dimensions=4)
    assert len(single.embeddings) == 1 and len(single.embeddings[0]) == 4
    assert mock_openai.last_request["json"]["dimensions"] == 4


def test_feedback(sdk_client: Client, mock_openai: MockOpenAI) -> None:
    result = sdk_client.ai.chat("rate me", model="gpt")
    fb = sdk_client.feedback("thumbs_up", True, inference_id=result.inference_id)
    uuid.UUID(fb.feedback_id)
    sdk_client.feedback("score", 0.75, inference_id=result.inference_id)
    sdk_client.feedback("comment", "nice answer", inference_id=result.inference_id)
    sdk_client.feedback("solved", False, episode_id=result.episode_id)
    with pytest.raises(NotFoundError) as unknown_metric:
        sdk_client.feedback("no_such_metric", True, inference_id=result.inference_id)
    assert unknown_metric.value.code == "metric_not_found"
    with pytest.raises(NotFoundError) as unknown_inference:
        sdk_client.feedback("thumbs_up", True, inference_id=str(uuid.uuid4()))
    assert unknown_inference.value.code == "inference_not_found"
    with pytest.raises(ValidationError):
        sdk_client.feedback("thumbs_up", "yes", inference_id=result.inference_id)
    with pytest.raises(InvalidRequestError):
        sdk_client.feedback("solved", True, inference_id=result.inference_id)


def test_feedback_lands_in_store(gateway_server: GatewayProcess, mock_openai: MockOpenAI) -> None:
    with Client(base_url=gateway_server.url) as client:
        result = client.ai.chat("store me", model="gpt")
        client.feedback("thumbs_up", True, inference_id=result.inference_id)
    row = httpx.get(f"{gateway_server.url}/v1/inferences/{result.inference_id}").json()
    assert row["model"] == "gpt" and row["provider"] == "mock" and row["status"] == "ok"
    assert row["output"]["content"] == "echo: store me"
    assert row["input"]["messages"][0]["content"] == "store me"
    assert row["input_tokens"] > 0 and row["latency_ms"] > 0
    assert [(f["metric_name"], f["value"]) for f in row["feedback"]] == [("thumbs_up", True)]


def test_unknown_model(sdk_client: Client) -> None:
    with pytest.raises(NotFoundError) as err:
        sdk_client.ai.chat("x", model="no-such-model")
    assert err.value.code == "model_not_found" and err.value.status == 404
