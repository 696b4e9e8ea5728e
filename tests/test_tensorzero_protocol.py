"""The TensorZero-compatible API (``/inference``, ``/feedback``) against the real ``tensorzero`` client.

A real server (uvicorn in a background thread, as ``runyard serve`` runs it) is started once
for the module; the ``tensorzero`` package talks to it over HTTP exactly as it would talk to a
TensorZero gateway. Models: the built-in ``dummy`` provider and the mock OpenAI upstream.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from uuid import UUID

import httpx
import pytest
from tensorzero import (
    AsyncTensorZeroGateway,
    ChatInferenceResponse,
    FinishReason,
    ImageBase64,
    JsonInferenceResponse,
    TensorZeroError,
    TensorZeroGateway,
    Text,
    TextChunk,
    ToolCall,
    ToolCallChunk,
    ToolResult,
)
from tensorzero.types import ChatChunk, JsonChunk

from support import tensorzero_app
from support.openai_mock import B, MockOpenAI
from support.tensorzero_app import ANSWER_SCHEMA, WEATHER_TOOL, as_uuid, chat, chat_chunks, stream_of, text_of

# The module's fixtures: a Runyard server for the module, the tensorzero client and httpx on it.
store_url, base_url, tz, http = (
    tensorzero_app.store_url,
    tensorzero_app.base_url,
    tensorzero_app.tz,
    tensorzero_app.http,
)

pytestmark = pytest.mark.timeout(60)

# --------------------------------------------------------------------------- non-streaming


def test_inference_text_and_episode(tz: TensorZeroGateway) -> None:
    response = chat(
        tz,
        model_name="dummy::echo",
        input={"system": "You are terse.", "messages": [{"role": "user", "content": "hello there"}]},
    )
    assert len(response.content) == 1
    block = response.content[0]
    assert isinstance(block, Text)
    assert block.text == "echo: hello there"
    assert response.usage.input_tokens == 5  # "You are terse." + "hello there"
    assert response.usage.output_tokens == 3
    assert response.finish_reason == FinishReason.STOP
    assert response.variant_name == "dummy"
    assert isinstance(response.inference_id, UUID)
    assert isinstance(response.episode_id, UUID)

    again = chat(
        tz,
        model_name="dummy::echo",
        episode_id=response.episode_id,
        input={"messages": [{"role": "user", "content": [Text(text="second turn")]}]},
    )
    assert isinstance(again, ChatInferenceResponse)
    assert again.episode_id == response.episode_id
    assert again.inference_id != response.inference_id
    assert isinstance(again.content[0], Text) and again.content[0].text == "echo: second turn"


def test_inference_through_openai_upstream(tz: TensorZeroGateway, mock_openai: MockOpenAI) -> None:
    response = chat(
        tz,
        model_name="mock::gpt-test",
        input={"system": "Be brief.", "messages": [{"role": "user", "content": "ping pong"}]},
        params={"chat_completion": {"temperature": 0.2, "max_tokens": 50, "seed": 7, "stop_sequences": ["END"]}},
        tags={"team": "search"},
    )
    assert isinstance(response, ChatInferenceResponse)
    assert isinstance(response.content[0], Text) and response.content[0].text == "echo: ping pong"
    assert response.variant_name == "mock"
    assert response.usage.input_tokens == 4
    sent = mock_openai.last_request["json"]
    assert sent["model"] == "gpt-test"
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "ping pong"},
    ]
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 50
    assert sent["seed"] == 7
    assert sent["stop"] == ["END"]


def test_function_name_is_a_configured_model(tz: TensorZeroGateway) -> None:
    response = chat(tz, function_name="support_bot", input={"messages": [{"role": "user", "content": "hi"}]})
    assert isinstance(response, ChatInferenceResponse)
    assert isinstance(response.content[0], Text) and response.content[0].text == "echo: hi"


def test_unknown_model_and_function_are_404(tz: TensorZeroGateway) -> None:
    with pytest.raises(TensorZeroError) as err:
        tz.inference(model_name="no_such_model", input={"messages": [{"role": "user", "content": "hi"}]})
    assert err.value.status_code == 404
    assert "model_not_found" in (err.value.text or "")
    with pytest.raises(TensorZeroError) as err:
        tz.inference(function_name="no_such_fn", input={"messages": [{"role": "user", "content": "hi"}]})
    assert err.value.status_code == 404
    assert "function_not_found" in (err.value.text or "")


def test_templates_are_refused(tz: TensorZeroGateway) -> None:
    with pytest.raises(TensorZeroError) as err:
        tz.inference(
            model_name="dummy::echo",
            input={"system": {"assistant_name": "Bob"}, "messages": [{"role": "user", "content": "hi"}]},
        )
    assert err.value.status_code == 400
    assert "templates_unsupported" in (err.value.text or "")
    with pytest.raises(TensorZeroError) as err:
        tz.inference(
            model_name="dummy::echo",
            input={"messages": [{"role": "user", "content": [Text(arguments={"topic": "x"})]}]},
        )
    assert err.value.status_code == 400
    assert "templates_unsupported" in (err.value.text or "")


# --------------------------------------------------------------------------- streaming


def test_stream_inference(tz: TensorZeroGateway) -> None:
    chunks = chat_chunks(
        tz,
        model_name="dummy::echo",
        input={"messages": [{"role": "user", "content": "stream me please"}]},
    )
    assert len(chunks) >= 3
    assert text_of(chunks) == "echo: stream me please"
    ids = {(c.inference_id, c.episode_id, c.variant_name) for c in chunks}
    assert len(ids) == 1
    assert chunks[-1].finish_reason == FinishReason.STOP
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.output_tokens == 4


def test_stream_inference_through_openai_upstream(tz: TensorZeroGateway, mock_openai: MockOpenAI) -> None:
    chunks = chat_chunks(
        tz,
        model_name="mock::gpt-test",
        input={"messages": [{"role": "user", "content": "one two three"}]},
    )
    assert text_of(chunks) == "echo: one two three"
    assert chunks[-1].finish_reason == FinishReason.STOP
    assert chunks[-1].usage is not None and chunks[-1].usage.input_tokens == 3
    assert mock_openai.last_request["json"]["stream"] is True


def test_stream_failure_mid_stream_raises(tz: TensorZeroGateway, mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.drop_mid_stream(after_chunks=2))
    stream = stream_of(
        tz, model_name="mock::gpt-test", input={"messages": [{"role": "user", "content": "alpha beta gamma delta"}]}
    )
    received: list[str] = []
    with pytest.raises(TensorZeroError) as err:
        for chunk in stream:
            assert isinstance(chunk, ChatChunk)
            received.extend(b.text for b in chunk.content if isinstance(b, TextChunk))
    assert "".join(received) == "echo: alpha"
    assert "upstream" in str(err.value)


def test_stream_errors_before_start_are_http_errors(tz: TensorZeroGateway) -> None:
    with pytest.raises(TensorZeroError) as err:
        next(stream_of(tz, model_name="nope::x", input={"messages": [{"role": "user", "content": "hi"}]}))
    assert err.value.status_code == 404


# --------------------------------------------------------------------------- tools and JSON


@pytest.mark.parametrize("model", ["dummy::tool", "mock::gpt-test"])
def test_tool_round_trip(tz: TensorZeroGateway, mock_openai: MockOpenAI, model: str) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris?"}]
    first = chat(tz, model_name=model, input={"messages": messages}, additional_tools=[WEATHER_TOOL])
    assert isinstance(first, ChatInferenceResponse)
    assert first.finish_reason == FinishReason.TOOL_CALL
    calls = [b for b in first.content if isinstance(b, ToolCall)]
    assert len(calls) == 1
    call = calls[0]
    assert call.raw_name == call.name == "get_weather"
    assert isinstance(call.arguments, dict) and set(call.arguments) == {"city"}
    assert json.loads(call.raw_arguments) == call.arguments

    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [ToolResult(name="get_weather", result="sunny, 21C", id=call.id)]},
    ]
    second = chat(
        tz, model_name=model, episode_id=first.episode_id, input={"messages": messages}, additional_tools=[WEATHER_TOOL]
    )
    assert isinstance(second, ChatInferenceResponse)
    assert isinstance(second.content[0], Text)
    assert second.content[0].text == "tool said: sunny, 21C"
    assert second.episode_id == first.episode_id
    if model.startswith("mock::"):
        sent = mock_openai.last_request["json"]["messages"]
        # The client echoes a parsed tool call as {"id", "name", "arguments": <its own compact JSON>}.
        assert sent[1]["role"] == "assistant" and sent[1].get("content") is None
        [echoed] = sent[1]["tool_calls"]
        assert echoed["id"] == call.id and echoed["function"]["name"] == "get_weather"
        assert json.loads(echoed["function"]["arguments"]) == call.arguments
        assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C", "name": "get_weather"}
        assert mock_openai.last_request["json"]["tools"][0]["function"]["name"] == "get_weather"


def test_tool_choice_and_stream_tool_call(tz: TensorZeroGateway, mock_openai: MockOpenAI) -> None:
    other = {"name": "get_time", "description": "Current time", "parameters": {"type": "object", "properties": {}}}
    chunks = chat_chunks(
        tz,
        model_name="mock::gpt-test",
        input={"messages": [{"role": "user", "content": "time?"}]},
        additional_tools=[WEATHER_TOOL, other],
        tool_choice={"specific": "get_time"},
    )
    assert mock_openai.last_request["json"]["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    deltas = [b for c in chunks for b in c.content if isinstance(b, ToolCallChunk)]
    assert deltas and {d.id for d in deltas} == {"call_1"}
    assert "".join(d.raw_name for d in deltas) == "get_time"
    assert json.loads("".join(d.raw_arguments for d in deltas)) == {}
    assert chunks[-1].finish_reason == FinishReason.TOOL_CALL

    tz.inference(
        model_name="mock::gpt-test",
        input={"messages": [{"role": "user", "content": "no tools"}]},
        additional_tools=[WEATHER_TOOL],
        # The .pyi says "off", but the client's Rust side only accepts none|auto|required|specific.
        tool_choice="none",  # type: ignore[arg-type]
    )
    assert mock_openai.last_request["json"]["tool_choice"] == "none"


def test_output_schema_json_response(tz: TensorZeroGateway, mock_openai: MockOpenAI) -> None:
    response = tz.inference(
        model_name="dummy::echo",
        input={"messages": [{"role": "user", "content": "answer as JSON"}]},
        output_schema=ANSWER_SCHEMA,
    )
    assert isinstance(response, JsonInferenceResponse)
    assert response.output.parsed == {"answer": "example", "confidence": 1.0}
    assert response.output.raw is not None and json.loads(response.output.raw) == response.output.parsed

    upstream = tz.inference(
        model_name="mock::gpt-test",
        input={"messages": [{"role": "user", "content": "answer as JSON"}]},
        output_schema=ANSWER_SCHEMA,
    )
    assert isinstance(upstream, JsonInferenceResponse)
    assert upstream.output.parsed == {"answer": "x", "confidence": 1.0}
    fmt = mock_openai.last_request["json"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == ANSWER_SCHEMA


def test_output_schema_stream(tz: TensorZeroGateway) -> None:
    chunks = list(
        stream_of(
            tz,
            model_name="dummy::echo",
            input={"messages": [{"role": "user", "content": "answer as JSON"}]},
            output_schema=ANSWER_SCHEMA,
        )
    )
    assert all(isinstance(c, JsonChunk) for c in chunks)
    raw = "".join(c.raw for c in chunks if isinstance(c, JsonChunk))
    assert json.loads(raw) == {"answer": "example", "confidence": 1.0}
    assert chunks[-1].finish_reason == FinishReason.STOP


def test_image_input_reaches_upstream(tz: TensorZeroGateway, mock_openai: MockOpenAI) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    tz.inference(
        model_name="mock::gpt-test",
        input={
            "messages": [
                {"role": "user", "content": [Text(text="what is this?"), ImageBase64(data=png, mime_type="image/png")]}
            ]
        },
    )
    content = mock_openai.last_request["json"]["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
    ]


# --------------------------------------------------------------------------- feedback


def test_feedback_on_inference(tz: TensorZeroGateway, http: httpx.Client) -> None:
    response = chat(tz, model_name="dummy::echo", input={"messages": [{"role": "user", "content": "rate me"}]})
    result = tz.feedback(metric_name="thumbs_up", value=True, inference_id=response.inference_id, tags={"by": "qa"})
    assert isinstance(as_uuid(result.feedback_id), UUID)
    comment = tz.feedback(metric_name="comment", value="nice", inference_id=response.inference_id)
    assert isinstance(as_uuid(comment.feedback_id), UUID)
    r = http.get(f"/v1/inferences/{response.inference_id}")
    assert r.status_code == 200, r.text
    row = r.json()
    assert row["episode_id"] == str(response.episode_id) and row["provider"] == "dummy"
    assert [(f["id"], f["metric_name"], f["value"], f["tags"]) for f in row["feedback"]] == [
        (str(result.feedback_id), "thumbs_up", True, {"by": "qa"}),
        (str(comment.feedback_id), "comment", "nice", {}),
    ]


def test_dryrun_answers_but_stores_nothing(tz: TensorZeroGateway, http: httpx.Client) -> None:
    messages = {"messages": [{"role": "user", "content": "just trying"}]}
    dry = chat(tz, model_name="dummy::echo", input=messages, dryrun=True)
    stream = list(stream_of(tz, model_name="dummy::echo", input=messages, dryrun=True))
    kept = chat(tz, model_name="dummy::echo", input=messages)
    assert http.get(f"/v1/inferences/{kept.inference_id}").status_code == 200
    assert http.get(f"/v1/inferences/{dry.inference_id}").status_code == 404
    assert http.get(f"/v1/inferences/{stream[0].inference_id}").status_code == 404
    trial = tz.feedback(metric_name="thumbs_up", value=True, inference_id=kept.inference_id, dryrun=True)
    assert isinstance(as_uuid(trial.feedback_id), UUID)
    assert http.get(f"/v1/inferences/{kept.inference_id}").json()["feedback"] == []
    with pytest.raises(TensorZeroError):  # a dry run still checks everything
        tz.feedback(metric_name="thumbs_up", value="yes", inference_id=kept.inference_id, dryrun=True)
    bad = http.post("/inference", json={"model_name": "dummy::echo", "input": messages, "dryrun": "yes"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_dryrun"


def test_feedback_errors(tz: TensorZeroGateway) -> None:
    response = chat(tz, model_name="dummy::echo", input={"messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(TensorZeroError) as err:
        tz.feedback(metric_name="no_such_metric", value=True, inference_id=response.inference_id)
    assert err.value.status_code == 404
    with pytest.raises(TensorZeroError) as err:
        tz.feedback(metric_name="thumbs_up", value=True, inference_id="01966a3c-0000-7000-8000-000000000000")
    assert err.value.status_code == 404
    with pytest.raises(TensorZeroError) as err:
        tz.feedback(metric_name="thumbs_up", value="yes", inference_id=response.inference_id)
    assert err.value.status_code == 422


# --------------------------------------------------------------------------- async client


async def test_async_client(base_url: str) -> None:
    client = AsyncTensorZeroGateway.build_http(gateway_url=base_url, timeout=15, async_setup=False)
    assert isinstance(client, AsyncTensorZeroGateway)
    async with client:
        response = await client.inference(
            model_name="dummy::echo", input={"messages": [{"role": "user", "content": "async hello"}]}
        )
        assert isinstance(response, ChatInferenceResponse)
        assert isinstance(response.content[0], Text) and response.content[0].text == "echo: async hello"

        stream = await client.inference(
            model_name="dummy::echo",
            episode_id=response.episode_id,
            input={"messages": [{"role": "user", "content": "async stream"}]},
            stream=True,
        )
        texts: list[str] = []
        episodes = set()
        assert not isinstance(stream, ChatInferenceResponse | JsonInferenceResponse)
        async for chunk in stream:
            assert isinstance(chunk, ChatChunk)
            episodes.add(chunk.episode_id)
            texts.extend(b.text for b in chunk.content if isinstance(b, TextChunk))
        assert "".join(texts) == "echo: async stream"
        assert episodes == {response.episode_id}

        result = await client.feedback(metric_name="thumbs_up", value=False, inference_id=response.inference_id)
        assert isinstance(as_uuid(result.feedback_id), UUID)


# --------------------------------------------------------------------------- raw wire shape


def test_wire_shape(http: httpx.Client) -> None:
    body = {"model_name": "dummy::echo", "input": {"messages": [{"role": "user", "content": "hi"}]}, "unknown": 1}
    r = http.post("/inference", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) == {"inference_id", "episode_id", "variant_name", "content", "usage", "finish_reason"}
    assert data["content"] == [{"type": "text", "text": "echo: hi"}]
    assert data["usage"] == {"input_tokens": 1, "output_tokens": 2}

    r = http.post("/inference", json={**body, "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["content"][0] == {"type": "text", "id": "0", "text": "echo: "}
    assert chunks[-1]["content"] == [] and chunks[-1]["finish_reason"] == "stop"

    r = http.post("/inference", json={**body, "episode_id": "not-a-uuid"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_id"

    r = http.post("/feedback", json={"metric_name": "thumbs_up", "value": True, "episode_id": None})
    assert r.status_code == 400


def test_wire_request_variants(http: httpx.Client, mock_openai: MockOpenAI) -> None:
    """Forms the client sends that the happy paths above do not: a tool call it could not parse
    (echoed as raw_name/raw_arguments with null name/arguments), "off" tool choice, thoughts."""
    body = {
        "model_name": "mock::gpt-test",
        "input": {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thought", "text": "let me call the tool"},
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_call",
                            "id": "c9",
                            "raw_name": "get_weather",
                            "raw_arguments": '{"city": "Pa',
                            "name": None,
                            "arguments": None,
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "id": "c9", "name": "get_weather", "result": "rain"},
                        {"type": "raw_text", "value": "and tomorrow?"},
                    ],
                },
            ]
        },
        "additional_tools": [{**WEATHER_TOOL, "type": "function", "strict": True}],
        "tool_choice": "off",
        "params": {"chat_completion": {"temperature": None, "top_p": 0.5}},
        "cache_options": {"max_age_s": None, "enabled": "off"},
        "dryrun": True,
    }
    r = http.post("/inference", json=body)
    assert r.status_code == 200, r.text
    sent = mock_openai.last_request["json"]
    assert sent["tool_choice"] == "none" and sent["top_p"] == 0.5 and "temperature" not in sent
    assert sent["tools"][0]["function"]["strict"] is True
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "c9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Pa'}}
            ],
        },
        {"role": "tool", "content": "rain", "tool_call_id": "c9", "name": "get_weather"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    assert r.json()["content"] == [{"type": "text", "text": "echo: and tomorrow?"}]

    for bad, code in [
        ({"role": "system", "content": "x"}, "invalid_role"),
        ({"role": "user", "content": [{"type": "template", "name": "user", "arguments": {}}]}, "templates_unsupported"),
        ({"role": "user", "content": [{"type": "mystery"}]}, "invalid_content_block"),
    ]:
        r = http.post("/inference", json={"model_name": "dummy::echo", "input": {"messages": [bad]}})
        assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
