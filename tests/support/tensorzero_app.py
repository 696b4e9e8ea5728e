"""The TensorZero protocol tests' server and client fixtures and helpers: a real Runyard server
(uvicorn on a loopback port, as ``runyard serve`` runs it) for the module, the real
``tensorzero`` client against it, and shorthands for its answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from tensorzero import ChatInferenceResponse, InferenceChunk, JsonInferenceResponse, TensorZeroGateway, TextChunk
from tensorzero.types import ChatChunk

from runyard.config import parse_config
from runyard.server.app import create_app
from support.loopback import LoopbackServer
from support.openai_mock import MockOpenAI

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer", "confidence"],
    "additionalProperties": False,
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('tensorzero') / 'rt.db'}"


@pytest.fixture(scope="module")
def base_url(store_url: str, _mock_openai_server: MockOpenAI) -> Iterator[str]:
    config = parse_config(
        {
            "storage": {"url": store_url, "flush_interval_ms": 20},
            "providers": {"mock": {"kind": "openai", "base_url": _mock_openai_server.url, "timeout": 10}},
            "models": {"support_bot": {"routes": ["dummy::echo"]}},
            "metrics": {"thumbs_up": {"type": "boolean", "level": "inference"}},
        }
    )
    server = LoopbackServer(create_app(config), lifespan="on", name="runyard-tz")
    try:
        server.start()
    except RuntimeError:
        pytest.fail("the runyard server did not start")
    try:
        yield server.url
    finally:
        server.stop()
        assert not server.thread.is_alive(), "the runyard server did not shut down"


@pytest.fixture(scope="module")
def tz(base_url: str) -> Iterator[TensorZeroGateway]:
    with TensorZeroGateway.build_http(gateway_url=base_url, timeout=15) as client:
        yield client


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield client


def as_uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def chat(tz: TensorZeroGateway, **kwargs: Any) -> ChatInferenceResponse:
    response = tz.inference(**kwargs)
    assert isinstance(response, ChatInferenceResponse), response
    return response


def stream_of(tz: TensorZeroGateway, **kwargs: Any) -> Iterator[InferenceChunk]:
    stream = tz.inference(stream=True, **kwargs)
    assert not isinstance(stream, ChatInferenceResponse | JsonInferenceResponse), stream
    return stream


def chat_chunks(tz: TensorZeroGateway, **kwargs: Any) -> list[ChatChunk]:
    chunks = list(stream_of(tz, **kwargs))
    assert all(isinstance(c, ChatChunk) for c in chunks), chunks
    return [c for c in chunks if isinstance(c, ChatChunk)]


def text_of(chunks: list[ChatChunk]) -> str:
    return "".join(b.text for c in chunks for b in c.content if isinstance(b, TextChunk))
