"""AnthropicProvider against the shared mock Messages API server (``support.anthropic_mock``).

The mock validates what the provider sends the way the real API does (auth and version
headers, required ``max_tokens``, alternating user/assistant turns, tool_result blocks that
answer the previous turn's tool_use, no OpenAI-only fields) and answers realistic JSON / SSE:
scripted per request here, or its default answers (echo, tool_use, tool_result, forced tool).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from runyard.config import ProviderConfig
from runyard.errors import InvalidRequestError, RateLimitError, UpstreamError
from runyard.inference import ChatDelta, ChatRequest, ModelToolCallDelta
from runyard.providers.anthropic import JSON_OBJECT_INSTRUCTION, AnthropicProvider
from support.anthropic_mock import B, MockAnthropic, json_reply, raw_reply, sse_reply

API_KEY = "sk-ant-test-123"


# -- scripted replies --------------------------------------------------------------------------------


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6, **usage},
    }


def stream_events(
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]], stop_reason: str = "end_turn"
) -> list[dict[str, Any]]:
    """A full Messages stream: (content_block_start block, its deltas) for each block."""
    start = message([], stop_reason="", input_tokens=25, output_tokens=1, cache_read_input_tokens=5)
    start["stop_reason"] = None
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for i, (block, deltas) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": i, "content_block": block})
        events += [{"type": "content_block_delta", "index": i, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": i})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 15},
        }
    )
    events.append({"type": "message_stop"})
    return events


def text_block(*pieces: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return {"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in pieces]


def tool_block(tool_id: str, name: str, *pieces: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
    return block, [{"type": "input_json_delta", "partial_json": p} for p in pieces]


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
async def provider(mock_anthropic: MockAnthropic, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AnthropicProvider]:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", API_KEY)
    prov = AnthropicProvider(
        "anthropic", ProviderConfig(kind="anthropic", base_url=mock_anthropic.url, api_key_env="TEST_ANTHROPIC_KEY")
    )
    yield prov
    await prov.aclose()


def chat(messages: list[dict[str, Any]], **params: Any) -> ChatRequest:
    return ChatRequest.model_validate({"messages": messages, **params})


async def collect(provider: AnthropicProvider, request: ChatRequest) -> list[ChatDelta]:
    return [d async for d in provider.stream_chat(request, "claude-sonnet-4-5")]


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


# -- non-streaming ----------------------------------------------------------------------------------


async def test_chat_text(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    mock_anthropic.script(json_reply(message([{"type": "text", "text": "Bonjour !"}], cache_read_input_tokens=8)))
    request = chat(
        [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Say hello"},
        ],
        temperature=0.3,
        top_p=0.9,
        stop="###",
        user="u-42",
    )
    result = await provider.chat(request, "claude-sonnet-4-5")

    assert result.content == "Bonjour !"
    assert result.tool_calls == []
    assert result.finish_reason == "stop"
    assert result.provider == "anthropic"
    assert result.provider_model == "claude-sonnet-4-5-20250929"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.cached_tokens) == (20, 6, 8)

    assert mock_anthropic.requests[0]["headers"]["x-api-key"] == API_KEY
    assert mock_anthropic.requests[0]["headers"]["anthropic-version"] == "2023-06-01"
    body = mock_anthropic.bodies[0]
    assert body["model"] == "claude-sonnet-4-5"
    assert body["system"] == "You are terse.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]
    assert body["max_tokens"] == 4096
    assert (body["temperature"], body["top_p"], body["stop_sequences"]) == (0.3, 0.9, ["###"])
    assert body["metadata"] == {"user_id": "u-42"}
    assert "stream" not in body and "tools" not in body


async def test_max_tokens_and_v1_base_url(mock_anthropic: MockAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", API_KEY)
    config = ProviderConfig(kind="anthropic", base_url=mock_anthropic.url + "/v1/", api_key_env="TEST_ANTHROPIC_KEY")
    provider = AnthropicProvider("anthropic", config)
    try:
        mock_anthropic.script(json_reply(message([{"type": "text", "text": "ok"}], stop_reason="max_tokens")))
        result = await provider.chat(chat([{"role": "user", "content": "hi"}], max_completion_tokens=7), "m")
    finally:
        await provider.aclose()
    assert result.finish_reason == "length"
    assert mock_anthropic.bodies[0]["max_tokens"] == 7


async def test_images(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    mock_anthropic.script(json_reply(message([{"type": "text", "text": "two cats"}])))
    content = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
    ]
    await provider.chat(chat([{"role": "user", "content": content}]), "m")
    assert mock_anthropic.bodies[0]["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


async def test_tool_use_round_trip(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    mock_anthropic.script(
        json_reply(
            message(
                [
                    {"type": "text", "text": "Checking both."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Oslo"}},
                ],
                stop_reason="tool_use",
            )
        )
    )
    history: list[dict[str, Any]] = [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris and Oslo?"},
    ]
    first = await provider.chat(chat(history, tools=[WEATHER_TOOL], tool_choice="required"), "m")

    assert mock_anthropic.bodies[0]["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert mock_anthropic.bodies[0]["tool_choice"] == {"type": "any"}
    assert first.finish_reason == "tool_calls"
    assert first.content == "Checking both."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in first.tool_calls] == [
        ("toolu_01", "get_weather", {"city": "Paris"}),
        ("toolu_02", "get_weather", {"city": "Oslo"}),
    ]

    # the OpenAI-style follow-up: assistant tool_calls, one tool message per call, then the user
    history.append(
        {
            "role": "assistant",
            "content": first.content,
            "tool_calls": [c.to_openai() for c in first.tool_calls],
        }
    )
    history.append({"role": "tool", "tool_call_id": "toolu_01", "content": "18°C, sunny"})
    history.append({"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "-3°C"}]})
    history.append({"role": "user", "content": "Which is warmer?"})
    mock_anthropic.script(json_reply(message([{"type": "text", "text": "Paris."}])))
    second = await provider.chat(chat(history, tools=[WEATHER_TOOL], parallel_tool_calls=False), "m")

    assert second.content == "Paris."
    body = mock_anthropic.bodies[1]
    assert body["system"] == "Use tools."
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18°C, sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_02",
                    "content": [{"type": "text", "text": "-3°C"}],
                },
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
async def test_tool_choice(
    mock_anthropic: MockAnthropic, provider: AnthropicProvider, choice: Any, expected: Any
) -> None:
    mock_anthropic.script(json_reply(message([{"type": "text", "text": "ok"}])))
    await provider.chat(chat([{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL], tool_choice=choice), "m")
    assert mock_anthropic.bodies[0]["tool_choice"] == expected


async def test_invalid_tool_arguments_rejected_locally(
    mock_anthropic: MockAnthropic, provider: AnthropicProvider
) -> None:
    bad = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    request = chat([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [bad]}])
    with pytest.raises(InvalidRequestError):
        await provider.chat(request, "m")
    assert mock_anthropic.requests == []


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
    "required": ["city", "temp_c"],
}
JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "weather report", "schema": SCHEMA}}


async def test_json_schema_emulation(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    answer = {"city": "Paris", "temp_c": 18.5}
    mock_anthropic.script(
        json_reply(
            message(
                [{"type": "tool_use", "id": "toolu_9", "name": "weather_report", "input": answer}],
                stop_reason="tool_use",
            )
        )
    )
    request = chat([{"role": "user", "content": "Weather in Paris?"}], response_format=JSON_SCHEMA_FORMAT)
    result = await provider.chat(request, "m")

    body = mock_anthropic.bodies[0]
    assert body["tools"][0]["name"] == "weather_report"
    assert body["tools"][0]["input_schema"] == SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "weather_report"}
    assert result.content is not None and json.loads(result.content) == answer
    assert result.tool_calls == []
    assert result.finish_reason == "stop"


async def test_json_schema_emulation_streaming(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    mock_anthropic.script(
        sse_reply(
            stream_events(
                [tool_block("toolu_9", "weather_report", '{"city": "Pa', 'ris", "temp_c": 18.5}')], "tool_use"
            )
        )
    )
    request = chat([{"role": "user", "content": "Weather in Paris?"}], response_format=JSON_SCHEMA_FORMAT)
    deltas = await collect(provider, request)
    assert all(d.tool_calls is None for d in deltas)
    assert json.loads("".join(d.content or "" for d in deltas)) == {"city": "Paris", "temp_c": 18.5}
    assert deltas[-1].finish_reason == "stop"


async def test_json_object_adds_system_instruction(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    mock_anthropic.script(json_reply(message([{"type": "text", "text": '{"ok": true}'}])))
    request = chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "status?"}],
        response_format={"type": "json_object"},
    )
    result = await provider.chat(request, "m")
    assert json.loads(result.content or "") == {"ok": True}
    assert mock_anthropic.bodies[0]["system"] == "Be brief.\n\n" + JSON_OBJECT_INSTRUCTION
    assert "tools" not in mock_anthropic.bodies[0]


# -- streaming --------------------------------------------------------------------------------------


async def test_stream_text(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    mock_anthropic.script(sse_reply(stream_events([text_block("Hel", "lo, ", "world")], "stop_sequence")))
    request = chat([{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"}])
    deltas = await collect(provider, request)

    assert [d.content for d in deltas[:-1]] == ["Hel", "lo, ", "world"]
    final = deltas[-1]
    assert final.finish_reason == "stop" and final.content is None
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cached_tokens) == (30, 15, 5)
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert mock_anthropic.bodies[0]["stream"] is True
    assert mock_anthropic.bodies[0]["system"] == "Be nice."
    assert mock_anthropic.requests[0]["headers"]["accept"] == "text/event-stream"


async def test_stream_tool_use(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    events = stream_events(
        [text_block("Let me check."), tool_block("toolu_7", "get_weather", '{"ci', 'ty": "Oslo"}')],
        "tool_use",
    )
    mock_anthropic.script(sse_reply(events))
    deltas = await collect(provider, chat([{"role": "user", "content": "Oslo?"}], tools=[WEATHER_TOOL]))

    assert "".join(d.content or "" for d in deltas) == "Let me check."
    parts = [tc for d in deltas for tc in d.tool_calls or ()]
    assert parts[0] == ModelToolCallDelta(0, id="toolu_7", name="get_weather", arguments="")
    assert all(p.index == 0 for p in parts)
    assert json.loads("".join(p.arguments for p in parts)) == {"city": "Oslo"}
    assert deltas[-1].finish_reason == "tool_calls"


async def test_stream_dropped_midway(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    # message_start, ping, content_block_start and two deltas; then the server hangs up
    events = stream_events([text_block("Hel", "lo", " never", " sent")])[:5]
    mock_anthropic.script(sse_reply(events, drop=True))
    received: list[str] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in provider.stream_chat(chat([{"role": "user", "content": "hi"}]), "m"):
            received.append(delta.content or "")
    assert received == ["Hel", "lo"]
    assert info.value.code == "upstream_disconnected"


async def test_stream_ends_without_message_stop(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    mock_anthropic.script(sse_reply(stream_events([text_block("partial")])[:-1]))  # clean EOF, no message_stop
    received: list[ChatDelta] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in provider.stream_chat(chat([{"role": "user", "content": "hi"}]), "m"):
            received.append(delta)
    assert [d.content for d in received] == ["partial"]
    assert info.value.code == "upstream_disconnected"


async def test_stream_error_event(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    events = stream_events([text_block("Hi")])[:4]
    events.append({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    mock_anthropic.script(sse_reply(events))
    received: list[str] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in provider.stream_chat(chat([{"role": "user", "content": "hi"}]), "m"):
            received.append(delta.content or "")
    assert received == ["Hi"]
    assert info.value.code == "upstream_error"
    assert "Overloaded" in info.value.message


async def test_stream_malformed_event(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    mock_anthropic.script(sse_reply(stream_events([])[:2], raw_tail=b"event: content_block_delta\ndata: {nope\n\n"))
    with pytest.raises(UpstreamError) as info:
        await collect(provider, chat([{"role": "user", "content": "hi"}]))
    assert info.value.code == "upstream_invalid_response"


# -- upstream failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 529])
async def test_upstream_5xx(mock_anthropic: MockAnthropic, provider: AnthropicProvider, status: int) -> None:
    mock_anthropic.script(json_reply({"type": "error", "error": {"type": "api_error", "message": "boom"}}, status))
    with pytest.raises(UpstreamError) as info:
        await provider.chat(chat([{"role": "user", "content": "hi"}]), "m")
    assert info.value.code == "upstream_error"
    assert "boom" in info.value.message


async def test_upstream_500_streaming(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    mock_anthropic.script(json_reply({"type": "error", "error": {"type": "api_error", "message": "boom"}}, 500))
    with pytest.raises(UpstreamError) as info:
        await collect(provider, chat([{"role": "user", "content": "hi"}]))
    assert info.value.code == "upstream_error"


async def test_rate_limited_with_retry_after(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    mock_anthropic.script(json_reply(error, 429, headers={"retry-after": "7"}))
    with pytest.raises(RateLimitError) as info:
        await provider.chat(chat([{"role": "user", "content": "hi"}]), "m")
    assert info.value.retry_after == 7.0
    assert "slow down" in info.value.message


async def test_rejected_request(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    # nothing queued: the mock's own validation answers 400 for an assistant-first conversation
    with pytest.raises(InvalidRequestError) as info:
        await provider.chat(chat([{"role": "assistant", "content": "I start"}]), "m")
    assert "must start with a user turn" in info.value.message


@pytest.mark.parametrize("body", [b'{"id": "msg_1", "content": [', b"<html>bad gateway</html>", b'{"id": "msg_1"}'])
async def test_malformed_json_body(mock_anthropic: MockAnthropic, provider: AnthropicProvider, body: bytes) -> None:
    mock_anthropic.script(raw_reply(body))
    with pytest.raises(UpstreamError) as info:
        await provider.chat(chat([{"role": "user", "content": "hi"}]), "m")
    assert info.value.code == "upstream_invalid_response"


async def test_embeddings_unsupported(provider: AnthropicProvider) -> None:
    assert "embed" not in provider.capabilities
    with pytest.raises(InvalidRequestError) as info:
        await provider.embed(["x"], "m")
    assert info.value.code == "unsupported_capability"


# -- the mock's default answers (nothing scripted) ---------------------------------------------------


async def test_default_echo(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    result = await provider.chat(chat([{"role": "user", "content": "hello there"}]), "claude-test")
    assert result.content == "echo: hello there"
    assert result.finish_reason == "stop"
    assert result.provider_model == "claude-test"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.cached_tokens) == (2, 3, 0)
    assert mock_anthropic.pending == 0 and len(mock_anthropic.requests) == 1
    assert mock_anthropic.last_request["path"] == "/v1/messages"


async def test_default_tool_use_then_tool_result(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    history: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await provider.chat(chat(history, tools=[WEATHER_TOOL]), "m")
    assert first.finish_reason == "tool_calls"
    assert first.content is None
    [call] = first.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})

    history.append({"role": "assistant", "content": None, "tool_calls": [call.to_openai()]})
    history.append({"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"})
    second = await provider.chat(chat(history, tools=[WEATHER_TOOL]), "m")
    assert second.content == "tool said: 18C and sunny"
    assert second.finish_reason == "stop" and second.tool_calls == []


async def test_default_forced_tool_answers_json_schema(provider: AnthropicProvider) -> None:
    request = chat([{"role": "user", "content": "Weather?"}], response_format=JSON_SCHEMA_FORMAT)
    result = await provider.chat(request, "m")
    assert json.loads(result.content or "") == {"city": "x", "temp_c": 1.0}
    assert result.finish_reason == "stop" and result.tool_calls == []

    deltas = await collect(provider, request)
    assert json.loads("".join(d.content or "" for d in deltas)) == {"city": "x", "temp_c": 1.0}
    assert deltas[-1].finish_reason == "stop"


async def test_default_stream_text_and_tool_use(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    deltas = await collect(provider, chat([{"role": "user", "content": "stream these words"}]))
    assert [d.content for d in deltas[:-1]] == ["echo:", " stream", " these", " words"]
    final = deltas[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)

    deltas = await collect(provider, chat([{"role": "user", "content": "Oslo?"}], tools=[WEATHER_TOOL]))
    parts = [tc for d in deltas for tc in d.tool_calls or ()]
    assert parts[0].name == "get_weather" and parts[0].id
    assert json.loads("".join(p.arguments or "" for p in parts)) == {"city": "Paris"}
    assert deltas[-1].finish_reason == "tool_calls"
    assert [b.get("stream") for b in mock_anthropic.bodies] == [True, True]


async def test_shared_behaviours(mock_anthropic: MockAnthropic, provider: AnthropicProvider) -> None:
    hi = chat([{"role": "user", "content": "hi"}])
    mock_anthropic.script(
        B.status(529),
        B.reply("fixed", tool_calls=[{"name": "get_weather", "input": {"city": "Rome"}}]),
        B.malformed(),
        B.drop_mid_stream(after_chunks=1),
        B.delay(0.05),
    )
    with pytest.raises(UpstreamError) as overloaded:
        await provider.chat(hi, "m")
    assert overloaded.value.code == "upstream_error" and "Overloaded" in overloaded.value.message
    fixed = await provider.chat(hi, "m")
    assert fixed.content == "fixed" and fixed.finish_reason == "tool_calls"
    assert json.loads(fixed.tool_calls[0].arguments) == {"city": "Rome"}
    with pytest.raises(UpstreamError) as malformed:
        await provider.chat(hi, "m")
    assert malformed.value.code == "upstream_invalid_response"
    received: list[str] = []
    with pytest.raises(UpstreamError) as dropped:
        async for delta in provider.stream_chat(chat([{"role": "user", "content": "a b c"}]), "m"):
            received.append(delta.content or "")
    assert received == ["echo:"] and dropped.value.code == "upstream_disconnected"
    assert (await provider.chat(hi, "m")).content == "echo: hi"  # after the delay
    assert mock_anthropic.pending == 0


async def test_rejected_without_api_key(mock_anthropic: MockAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_ANTHROPIC_KEY", raising=False)
    config = ProviderConfig(kind="anthropic", base_url=mock_anthropic.url, api_key_env="TEST_ANTHROPIC_KEY")
    keyless = AnthropicProvider("anthropic", config)
    mock_anthropic.script(B.reply("never"))
    try:
        with pytest.raises(UpstreamError) as info:
            await keyless.chat(chat([{"role": "user", "content": "hi"}]), "m")
    finally:
        await keyless.aclose()
    assert info.value.code == "upstream_auth_failed"
    assert mock_anthropic.pending == 1, "a rejected request consumes no scripted behaviour"


def test_mock_validation_over_plain_http(mock_anthropic: MockAnthropic) -> None:
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    url = mock_anthropic.url + "/v1/messages"
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}
    unanswered = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [tool_use]},
            {"role": "user", "content": "well?"},
        ],
        "stop": ["\n"],
        "temperature": 1.5,
        "stop_sequences": ["\n"],
    }
    r = httpx.post(url, json=unanswered, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    message = r.json()["error"]["message"]
    for problem in (
        "stop: Extra inputs are not permitted",
        "temperature: must be a number between 0 and 1",
        "each stop sequence must contain non-whitespace",
        "tool_use ids were found without tool_result blocks immediately after: toolu_1",
    ):
        assert problem in message
    r = httpx.post(url, json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(mock_anthropic.url + "/v1/nothing", headers=headers).status_code == 404
    assert len(mock_anthropic.requests) == 3


async def test_whitespace_stop_sequences_are_not_sent(provider: AnthropicProvider) -> None:
    result = await provider.chat(chat([{"role": "user", "content": "hi"}], stop=["\n\n", "END"]), "m")
    assert result.content == "echo: hi"
