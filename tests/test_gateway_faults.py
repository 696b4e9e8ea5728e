"""Upstream faults: 500, 429 + Retry-After, hangs past the timeout, dropped streams, malformed
JSON — fallback to the next route where configured, otherwise a typed error. Nothing hangs."""

from __future__ import annotations

import time

import httpx
import pytest

from runyard import Client, RateLimitError, TimeoutError, UpstreamError
from support.gateway import GatewayProcess
from support.openai_mock import B, MockOpenAI


@pytest.fixture
def client(gateway_server: GatewayProcess) -> Client:
    return Client(base_url=gateway_server.url, max_retries=0)


FAULTS = {
    "500": (lambda: B.status(500), UpstreamError, 502),
    "429": (lambda: B.status(429, headers={"retry-after": "3"}), RateLimitError, 429),
    "hang": (lambda: B.hang(5), TimeoutError, 504),
    "malformed": (lambda: B.malformed(), UpstreamError, 502),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_without_fallback_is_typed(client: Client, mock_openai: MockOpenAI, fault: str) -> None:
    behaviour, error, status = FAULTS[fault]
    mock_openai.script(behaviour())
    started = time.monotonic()
    with pytest.raises(error) as caught:
        client.ai.chat("hi", model="gpt")
    assert caught.value.status == status
    assert time.monotonic() - started < 4, "the provider's 1 s read timeout must cut a hang"
    if fault == "429":
        assert isinstance(caught.value, RateLimitError) and caught.value.retry_after == 3
    if fault == "malformed":
        assert caught.value.code == "upstream_invalid_response"


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_falls_back_to_next_route(client: Client, mock_openai: MockOpenAI, fault: str) -> None:
    mock_openai.script(FAULTS[fault][0]())
    result = client.ai.chat("hi", model="gpt-with-fallback")
    assert result.content == "echo: hi"
    assert result.provider == "backup"
    attempts = result.metadata["attempts"]
    assert [a["provider"] for a in attempts] == ["mock", "backup"]
    assert attempts[0]["code"] and attempts[1]["code"] is None
    assert [r["json"]["model"] for r in mock_openai.requests] == ["gpt-primary", "gpt-secondary"]


def test_all_routes_failing_lists_attempts(client: Client, mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.status(503), B.status(500))
    with pytest.raises(UpstreamError) as caught:
        client.ai.chat("hi", model="gpt-with-fallback")
    assert [a["provider"] for a in caught.value.details["attempts"]] == ["mock", "backup"]


def test_stream_failing_before_first_token_falls_back(client: Client, mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.drop_mid_stream(after_chunks=0))
    text = "".join(
        c.delta.content or "" for c in client.ai.chat("quiet fallback", model="gpt-with-fallback", stream=True)
    )
    assert text == "echo: quiet fallback"


@pytest.mark.parametrize("fault", ["500", "429"])
def test_stream_error_before_start_is_http_error(client: Client, mock_openai: MockOpenAI, fault: str) -> None:
    behaviour, error, status = FAULTS[fault]
    mock_openai.script(behaviour())
    with pytest.raises(error) as caught:
        list(client.ai.chat("hi", model="gpt", stream=True))
    assert caught.value.status == status


def test_stream_dropped_after_tokens_ends_with_error_event(
    gateway_server: GatewayProcess, client: Client, mock_openai: MockOpenAI
) -> None:
    mock_openai.script(B.drop_mid_stream(after_chunks=2))
    received = []
    with pytest.raises(UpstreamError) as caught:
        for chunk in client.ai.chat("one two three four five", model="gpt-with-fallback", stream=True):
            received.append(chunk.delta.content or "")
    assert "".join(received), "tokens sent before the failure are delivered"
    assert caught.value.code == "upstream_disconnected"
    assert len(mock_openai.requests) == 1, "no fallback once tokens were sent"
    # On the wire: an explicit error event and no [DONE].
    mock_openai.script(B.drop_mid_stream(after_chunks=2))
    body = httpx.post(
        f"{gateway_server.url}/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "a b c d"}], "stream": True},
        timeout=10,
    ).text
    assert '"error"' in body.rsplit("data: ", 1)[-1]
    assert "[DONE]" not in body


def test_sdk_retries_gateway_errors_with_one_idempotency_key(
    gateway_server: GatewayProcess, mock_openai: MockOpenAI
) -> None:
    mock_openai.script(B.status(500), B.status(500))
    with Client(base_url=gateway_server.url, max_retries=2) as client:
        result = client.ai.chat("third time lucky", model="gpt")
    assert result.content == "echo: third time lucky"
    assert len(mock_openai.requests) == 3


def test_idempotency_key_returns_first_answer(gateway_server: GatewayProcess, mock_openai: MockOpenAI) -> None:
    body = {"model": "gpt", "messages": "once only"}
    headers = {"Idempotency-Key": "test-key-1"}
    first = httpx.post(f"{gateway_server.url}/v1/ai/chat", json=body, headers=headers).json()
    second = httpx.post(f"{gateway_server.url}/v1/ai/chat", json=body, headers=headers).json()
    assert first["inference_id"] == second["inference_id"]
    assert len(mock_openai.requests) == 1
    other = httpx.post(f"{gateway_server.url}/v1/ai/chat", json={**body, "messages": "different"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
