"""The official ``openai`` package, unchanged, against ``runyard serve``."""

from __future__ import annotations

import json

import openai
import pytest

from support.gateway import GatewayProcess
from support.openai_mock import B, MockOpenAI


@pytest.fixture
def oai(gateway_server: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_server.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("model", ["gpt", "claude", "dummy::echo"])
def test_chat(oai: openai.OpenAI, mock_openai: MockOpenAI, mock_anthropic: object, model: str) -> None:
    resp = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi openai"}])
    assert resp.choices[0].message.content == "echo: hi openai"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens > 0
    assert resp.model == model


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_chat_stream(oai: openai.OpenAI, mock_openai: MockOpenAI, mock_anthropic: object, model: str) -> None:
    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream to openai"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream to openai"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_tools(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
    resp = oai.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "find"}], tools=[tool])
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"q": "Paris"}


def test_embeddings_default_base64_and_float(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    resp = oai.embeddings.create(model="embed", input=["alpha", "beta"])  # client asks for base64
    assert [len(d.embedding) for d in resp.data] == [8, 8]
    assert mock_openai.last_request["json"]["input"] == ["alpha", "beta"]
    floats = oai.embeddings.create(model="embed", input="alpha", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(resp.data[0].embedding, rel=1e-6)


def test_models_and_errors(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    ids = {m.id for m in oai.models.list()}
    assert {"gpt", "claude", "embed", "dummy::echo"} <= ids
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    mock_openai.script(B.status(500))
    with pytest.raises(openai.InternalServerError) as err:
        oai.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 502


def test_stream_error_mid_way_raises_in_openai_client(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.drop_mid_stream(after_chunks=2))
    stream = oai.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "a b c d e"}], stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
