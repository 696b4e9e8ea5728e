"""AnthropicProvider against a real mock Messages API server on 127.0.0.1.

The mock validates what the provider sends the way the real API does (auth and version
headers, required ``max_tokens``, alternating user/assistant turns, tool_result blocks that
answer an earlier tool_use, no OpenAI-only fields) and answers realistic JSON / SSE.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from runyard.config import ProviderConfig
from runyard.errors import InvalidRequestError, RateLimitError, UpstreamError
from runyard.providers.anthropic import JSON_OBJECT_INSTRUCTION, AnthropicProvider
from runyard.types import ChatDelta, ChatRequest, ToolCallDelta

API_KEY = "sk-ant-test-123"
Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPENAI_ONLY = {"stop", "response_format", "max_completion_tokens", "parallel_tool_calls", "user", "seed"}


# -- the mock server -----------------------------------------------------------------------------------


class MockAnthropic:
    """Serves ``POST /v1/messages``: checks each request, then plays the next queued reply."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.replies: list[Reply] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if request.headers.get("x-api-key") != API_KEY:
            return _error(401, "authentication_error", "invalid x-api-key")
        if request.headers.get("anthropic-version") != "2023-06-01":
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        body = await request.json()
        self.bodies.append(body)
        problems = check_body(body)
        if problems:
            return _error(400, "invalid_request_error", "; ".join(problems))
        return await self.replies.pop(0)(request)


def check_body(body: dict[str, Any]) -> list[str]:
    """What the real Messages API would reject."""
    problems = [f"unexpected field {k}" for k in OPENAI_ONLY & body.keys()]
    if not isinstance(body.get("model"), str):
        problems.append("model: required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        problems.append("max_tokens: required")
    if "system" in body and not isinstance(body["system"], str | list):
        problems.append("system: must be a string or text blocks")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or messages[0].get("role") != "user":
        return [*problems, "messages: must start with a user turn"]
    tool_ids: set[str] = set()
    for i, msg in enumerate(messages):
        role, content = msg.get("role"), msg.get("content")
        if role not in ("user", "assistant"):
            problems.append(f"messages.{i}.role: unexpected {role!r}")
        if i and messages[i - 1].get("role") == role:
            problems.append(f"messages.{i}: roles must alternate")
        if not content:
            problems.append(f"messages.{i}.content: must be non-empty")
        for block in content if isinstance(content, list) else ():
            kind = block.get("type")
            if kind == "tool_use":
                if role != "assistant" or not isinstance(block.get("input"), dict):
                    problems.append(f"messages.{i}: bad tool_use block")
                tool_ids.add(block.get("id"))
            elif kind == "tool_result" and (role != "user" or block.get("tool_use_id") not in tool_ids):
                problems.append(f"messages.{i}: tool_result answers no earlier tool_use")
            elif kind not in ("text", "image", "tool_result"):
                problems.append(f"messages.{i}: unknown block type {kind!r}")
    for tool in body.get("tools") or ():
        if (
            set(tool) - {"name", "description", "input_schema"}
            or tool["input_schema"].get("type") != "object"
        ):
            problems.append(f"tools: bad tool {tool}")
    return problems


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.json_response(data, status=status, headers=headers)

    return reply


def raw_reply(body: bytes, status: int = 200, content_type: str = "application/json") -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=status, content_type=content_type)

    return reply


def sse_reply(events: list[dict[str, Any]], drop: bool = False, raw_tail: bytes = b"") -> Reply:
    """Stream ``events`` as SSE; ``drop`` closes the connection mid-body (no chunked terminator)."""

    async def reply(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for event in events:
            await resp.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        if raw_tail:
            await resp.write(raw_tail)
        if drop:
            assert request.transport is not None
            request.transport.close()  # flushes what was written, then hangs up
            raise web.HTTPException()  # aiohttp drops the half-sent response quietly
        await resp.write_eof()
        return resp

    return reply


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
async def mock() -> AsyncIterator[MockAnthropic]:
    server = MockAnthropic()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def provider(mock: MockAnthropic, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AnthropicProvider]:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", API_KEY)
    prov = AnthropicProvider(
        "anthropic", ProviderConfig(kind="anthropic", base_url=mock.url, api_key_env="TEST_ANTHROPIC_KEY")
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


async def test_chat_text(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    mock.replies.append(
        json_reply(message([{"type": "text", "text": "Bonjour !"}], cache_read_input_tokens=8))
    )
    request = chat(
        [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Say hello"},
        ],
        temperature=0.3,
        top_p=0.9,
        stop="\n\n",
        user="u-42",
    )
    result = await provider.chat(request, "claude-sonnet-4-5")

    assert result.content == "Bonjour !"
    assert result.tool_calls == []
    assert result.finish_reason == "stop"
    assert result.provider == "anthropic"
    assert result.provider_model == "claude-sonnet-4-5-20250929"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.cached_tokens) == (20, 6, 8)

    assert mock.headers[0]["x-api-key"] == API_KEY
    assert mock.headers[0]["anthropic-version"] == "2023-06-01"
    body = mock.bodies[0]
    assert body["model"] == "claude-sonnet-4-5"
    assert body["system"] == "You are terse.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]
    assert body["max_tokens"] == 4096
    assert (body["temperature"], body["top_p"], body["stop_sequences"]) == (0.3, 0.9, ["\n\n"])
    assert body["metadata"] == {"user_id": "u-42"}
    assert "stream" not in body and "tools" not in body


async def test_max_tokens_and_v1_base_url(mock: MockAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", API_KEY)
    config = ProviderConfig(kind="anthropic", base_url=mock.url + "/v1/", api_key_env="TEST_ANTHROPIC_KEY")
    provider = AnthropicProvider("anthropic", config)
    try:
        mock.replies.append(json_reply(message([{"type": "text", "text": "ok"}], stop_reason="max_tokens")))
        result = await provider.chat(chat([{"role": "user", "content": "hi"}], max_completion_tokens=7), "m")
    finally:
        await provider.aclose()
    assert result.finish_reason == "length"
    assert mock.bodies[0]["max_tokens"] == 7


async def test_images(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    mock.replies.append(json_reply(message([{"type": "text", "text": "two cats"}])))
    content = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
    ]
    await provider.chat(chat([{"role": "user", "content": content}]), "m")
    assert mock.bodies[0]["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


async def test_tool_use_round_trip(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    mock.replies.append(
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

    assert mock.bodies[0]["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert mock.bodies[0]["tool_choice"] == {"type": "any"}
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
    history.append(
        {"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "-3°C"}]}
    )
    history.append({"role": "user", "content": "Which is warmer?"})
    mock.replies.append(json_reply(message([{"type": "text", "text": "Paris."}])))
    second = await provider.chat(chat(history, tools=[WEATHER_TOOL], parallel_tool_calls=False), "m")

    assert second.content == "Paris."
    body = mock.bodies[1]
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
    mock: MockAnthropic, provider: AnthropicProvider, choice: Any, expected: Any
) -> None:
    mock.replies.append(json_reply(message([{"type": "text", "text": "ok"}])))
    await provider.chat(
        chat([{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL], tool_choice=choice), "m"
    )
    assert mock.bodies[0]["tool_choice"] == expected


async def test_invalid_tool_arguments_rejected_locally(
    mock: MockAnthropic, provider: AnthropicProvider
) -> None:
    bad = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    request = chat([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [bad]}])
    with pytest.raises(InvalidRequestError):
        await provider.chat(request, "m")
    assert mock.bodies == []


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
    "required": ["city", "temp_c"],
}
JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "weather report", "schema": SCHEMA}}


async def test_json_schema_emulation(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    answer = {"city": "Paris", "temp_c": 18.5}
    mock.replies.append(
        json_reply(
            message(
                [{"type": "tool_use", "id": "toolu_9", "name": "weather_report", "input": answer}],
                stop_reason="tool_use",
            )
        )
    )
    request = chat([{"role": "user", "content": "Weather in Paris?"}], response_format=JSON_SCHEMA_FORMAT)
    result = await provider.chat(request, "m")

    body = mock.bodies[0]
    assert body["tools"][0]["name"] == "weather_report"
    assert body["tools"][0]["input_schema"] == SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "weather_report"}
    assert result.content is not None and json.loads(result.content) == answer
    assert result.tool_calls == []
    assert result.finish_reason == "stop"


async def test_json_schema_emulation_streaming(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    mock.replies.append(
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


async def test_json_object_adds_system_instruction(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    mock.replies.append(json_reply(message([{"type": "text", "text": '{"ok": true}'}])))
    request = chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "status?"}],
        response_format={"type": "json_object"},
    )
    result = await provider.chat(request, "m")
    assert json.loads(result.content or "") == {"ok": True}
    assert mock.bodies[0]["system"] == "Be brief.\n\n" + JSON_OBJECT_INSTRUCTION
    assert "tools" not in mock.bodies[0]


# -- streaming --------------------------------------------------------------------------------------


async def test_stream_text(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    mock.replies.append(sse_reply(stream_events([text_block("Hel", "lo, ", "world")], "stop_sequence")))
    request = chat([{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"}])
    deltas = await collect(provider, request)

    assert [d.content for d in deltas[:-1]] == ["Hel", "lo, ", "world"]
    final = deltas[-1]
    assert final.finish_reason == "stop" and final.content is None
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cached_tokens) == (30, 15, 5)
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert mock.bodies[0]["stream"] is True
    assert mock.bodies[0]["system"] == "Be nice."
    assert mock.headers[0]["Accept"] == "text/event-stream"


async def test_stream_tool_use(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    events = stream_events(
        [text_block("Let me check."), tool_block("toolu_7", "get_weather", '{"ci', 'ty": "Oslo"}')],
        "tool_use",
    )
    mock.replies.append(sse_reply(events))
    deltas = await collect(provider, chat([{"role": "user", "content": "Oslo?"}], tools=[WEATHER_TOOL]))

    assert "".join(d.content or "" for d in deltas) == "Let me check."
    parts = [tc for d in deltas for tc in d.tool_calls or ()]
    assert parts[0] == ToolCallDelta(0, id="toolu_7", name="get_weather", arguments="")
    assert all(p.index == 0 for p in parts)
    assert json.loads("".join(p.arguments for p in parts)) == {"city": "Oslo"}
    assert deltas[-1].finish_reason == "tool_calls"


async def test_stream_dropped_midway(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    # message_start, ping, content_block_start and two deltas; then the server hangs up
    events = stream_events([text_block("Hel", "lo", " never", " sent")])[:5]
    mock.replies.append(sse_reply(events, drop=True))
    received: list[str] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in provider.stream_chat(chat([{"role": "user", "content": "hi"}]), "m"):
            received.append(delta.content or "")
    assert received == ["Hel", "lo"]
    assert info.value.code == "upstream_disconnected"


async def test_stream_ends_without_message_stop(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    mock.replies.append(sse_reply(stream_events([text_block("partial")])[:-1]))  # clean EOF, no message_stop
    received: list[ChatDelta] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in provider.stream_chat(chat([{"role": "user", "content": "hi"}]), "m"):
            received.append(delta)
    assert [d.content for d in received] == ["partial"]
    assert info.value.code == "upstream_disconnected"


async def test_stream_error_event(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    events = stream_events([text_block("Hi")])[:4]
    events.append({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    mock.replies.append(sse_reply(events))
    received: list[str] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in provider.stream_chat(chat([{"role": "user", "content": "hi"}]), "m"):
            received.append(delta.content or "")
    assert received == ["Hi"]
    assert info.value.code == "upstream_error"
    assert "Overloaded" in info.value.message


async def test_stream_malformed_event(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    mock.replies.append(
        sse_reply(stream_events([])[:2], raw_tail=b"event: content_block_delta\ndata: {nope\n\n")
    )
    with pytest.raises(UpstreamError) as info:
        await collect(provider, chat([{"role": "user", "content": "hi"}]))
    assert info.value.code == "upstream_invalid_response"


# -- upstream failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 529])
async def test_upstream_5xx(mock: MockAnthropic, provider: AnthropicProvider, status: int) -> None:
    mock.replies.append(
        json_reply({"type": "error", "error": {"type": "api_error", "message": "boom"}}, status)
    )
    with pytest.raises(UpstreamError) as info:
        await provider.chat(chat([{"role": "user", "content": "hi"}]), "m")
    assert info.value.code == "upstream_error"
    assert "boom" in info.value.message


async def test_upstream_500_streaming(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    mock.replies.append(json_reply({"type": "error", "error": {"type": "api_error", "message": "boom"}}, 500))
    with pytest.raises(UpstreamError) as info:
        await collect(provider, chat([{"role": "user", "content": "hi"}]))
    assert info.value.code == "upstream_error"


async def test_rate_limited_with_retry_after(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    mock.replies.append(json_reply(error, 429, headers={"retry-after": "7"}))
    with pytest.raises(RateLimitError) as info:
        await provider.chat(chat([{"role": "user", "content": "hi"}]), "m")
    assert info.value.retry_after == 7.0
    assert "slow down" in info.value.message


async def test_rejected_request(mock: MockAnthropic, provider: AnthropicProvider) -> None:
    # nothing queued: the mock's own validation answers 400 for an assistant-first conversation
    with pytest.raises(InvalidRequestError) as info:
        await provider.chat(chat([{"role": "assistant", "content": "I start"}]), "m")
    assert "must start with a user turn" in info.value.message


@pytest.mark.parametrize(
    "body", [b'{"id": "msg_1", "content": [', b"<html>bad gateway</html>", b'{"id": "msg_1"}']
)
async def test_malformed_json_body(mock: MockAnthropic, provider: AnthropicProvider, body: bytes) -> None:
    mock.replies.append(raw_reply(body))
    with pytest.raises(UpstreamError) as info:
        await provider.chat(chat([{"role": "user", "content": "hi"}]), "m")
    assert info.value.code == "upstream_invalid_response"


async def test_embeddings_unsupported(provider: AnthropicProvider) -> None:
    assert "embed" not in provider.capabilities
    with pytest.raises(InvalidRequestError) as info:
        await provider.embed(["x"], "m")
    assert info.value.code == "unsupported_capability"
