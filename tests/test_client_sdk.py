"""AsyncClient / Client against a stub of the server's wire contract (uvicorn and in-process)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import runyard
from runyard.client import (
    ASGITransport,
    AsyncClient,
    AsyncStream,
    ChatChunk,
    ChatResult,
    Client,
    EmbedResult,
    RetryTransport,
    Stream,
)
from runyard.client.types import FeedbackResult
from runyard.errors import (
    AuthenticationError,
    InternalServerError,
    NotFoundError,
    UpstreamError,
    ValidationError,
)
from support.sdk_app import serve, sse

pytestmark = pytest.mark.timeout(20)

CHAT_RESULT = {
    "inference_id": "inf-1",
    "episode_id": "ep-1",
    "content": None,
    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}],
    "finish_reason": "tool_calls",
    "usage": {"input_tokens": 5, "output_tokens": 7, "cached_tokens": 1, "reasoning_tokens": 0, "total_tokens": 12},
    "model": "fast",
    "provider": "dummy",
    "_metadata": {"request_id": "inf-1", "vendor": "dummy", "model": "fast", "latency_ms": 1.5, "attempts": []},
    "future_field": "kept",
}


class Stub:
    """The server's wire contract, scripted; records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = self._app()

    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    def _app(self) -> Starlette:
        async def record(request: Request) -> dict[str, Any]:
            body = await request.body()
            entry = {
                "path": request.url.path,
                "headers": dict(request.headers),
                "json": json.loads(body) if body else None,
            }
            self.requests.append(entry)
            return entry["json"] or {}

        async def chat(request: Request) -> Response:
            body = await record(request)
            if body.get("model") == "missing":
                err = {"error": {"code": "unknown_model", "message": "no such model", "type": "not_found"}}
                return JSONResponse(err, 404)
            if not body.get("stream"):
                return JSONResponse(CHAT_RESULT)

            async def events() -> AsyncIterator[bytes]:
                for piece in ("Hi", " there"):
                    yield sse({"inference_id": "inf-2", "index": 0, "delta": {"content": piece}, "finish_reason": None})
                tool = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                yield sse({"inference_id": "inf-2", "index": 0, "delta": {"tool_calls": [tool]}, "finish_reason": None})
                if body.get("model") == "broken":
                    yield sse({"error": {"code": "upstream_error", "message": "provider died"}})
                    return
                usage = {"input_tokens": 2, "output_tokens": 2, "total_tokens": 4}
                yield sse({"inference_id": "inf-2", "index": 0, "delta": {}, "finish_reason": "stop", "usage": usage})
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        async def embed(request: Request) -> Response:
            body = await record(request)
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = [[float(i), 0.5] for i in range(len(texts))]
            return JSONResponse(
                {
                    "inference_id": "inf-3",
                    "embeddings": vectors,
                    "data": [{"index": i, "embedding": v} for i, v in enumerate(vectors)],
                    "model": "emb",
                    "provider": "dummy",
                    "usage": {"input_tokens": 3, "output_tokens": 0, "total_tokens": 3},
                    "_metadata": {"request_id": "inf-3"},
                }
            )

        async def feedback(request: Request) -> Response:
            body = await record(request)
            if body.get("metric_name") == "bad":
                err = {"error": {"code": "unknown_metric", "message": "no metric", "details": {"metric": "bad"}}}
                return JSONResponse(err, 422)
            return JSONResponse({"feedback_id": "fb-1"})

        async def secret(request: Request) -> Response:
            await record(request)
            err = {"error": {"code": "invalid_api_key", "message": "bad key", "type": "unauthorized"}}
            return JSONResponse(err, 401)

        async def garbage(request: Request) -> Response:
            return Response("{not json", media_type="application/json")

        return Starlette(
            routes=[
                Route("/v1/ai/chat", chat, methods=["POST"]),
                Route("/v1/ai/embed", embed, methods=["POST"]),
                Route("/v1/feedback", feedback, methods=["POST"]),
                Route("/secret", secret, methods=["GET"]),
                Route("/garbage", garbage, methods=["GET"]),
            ]
        )


@pytest.fixture(scope="module")
def tcp_stub() -> Iterator[tuple[Stub, str]]:
    stub = Stub()
    with serve(stub.app) as url:
        yield stub, url


@pytest.fixture(params=["uvicorn", "asgi"])
def stub_client_args(request: pytest.FixtureRequest, tcp_stub) -> tuple[Stub, dict[str, Any]]:
    """(stub, AsyncClient kwargs) for the stub over TCP or in-process."""
    stub, url = tcp_stub
    stub.requests.clear()
    if request.param == "uvicorn":
        return stub, {"base_url": url}
    return stub, {"base_url": "http://stub", "transport": ASGITransport(stub.app)}


# --------------------------------------------------------------------------- AsyncClient


async def test_chat_result_and_request_shape(stub_client_args) -> None:
    stub, kw = stub_client_args
    async with AsyncClient(api_key="sk-1", **kw) as client:
        result = await client.ai.chat("Hello", model="fast", temperature=0.0, seed=7, episode_id="ep-1")
    assert isinstance(result, ChatResult)
    sent = stub.last()
    assert sent["json"] == {"messages": "Hello", "model": "fast", "temperature": 0.0, "seed": 7, "episode_id": "ep-1"}
    headers = sent["headers"]
    assert headers["authorization"] == "Bearer sk-1"
    assert headers["user-agent"].startswith("runyard-python/")
    uuid.UUID(headers["idempotency-key"])  # a uuid4 per call
    # typed access
    assert result.content is None and result.finish_reason == "tool_calls"
    call = result.tool_calls[0]
    assert (call.id, call.function.name, call.function.parsed_arguments()) == ("call_1", "lookup", {"q": "x"})
    assert result.usage.total_tokens == 12 and result.usage.cached_tokens == 1
    assert (result.model, result.provider, result.inference_id, result.episode_id) == ("fast", "dummy", "inf-1", "ep-1")
    assert result.metadata["latency_ms"] == 1.5
    # dict-style access, wire names
    assert result["finish_reason"] == "tool_calls"
    assert result["_metadata"]["vendor"] == "dummy" and result["metadata"] is result.metadata
    assert result.get("future_field") == "kept" and result.get("absent", 3) == 3
    assert "usage" in result and "absent" not in result
    with pytest.raises(KeyError):
        result["absent"]
    assert result.to_dict()["_metadata"]["request_id"] == "inf-1"
    assert dict(result)["tool_calls"][0]["function"]["name"] == "lookup"


async def test_chat_message_list_tools_and_idempotency_key(stub_client_args) -> None:
    stub, kw = stub_client_args
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    async with AsyncClient(**kw) as client:
        await client.ai.chat(
            messages, vendor="openai", model="gpt", tools=tools, tool_choice="auto",
            response_format={"type": "json_object"}, max_tokens=5, idempotency_key="idem-1",
        )  # fmt: skip
    sent = stub.last()
    assert sent["json"] == {
        "messages": messages,
        "vendor": "openai",
        "model": "gpt",
        "tools": tools,
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "max_tokens": 5,
    }
    assert sent["headers"]["idempotency-key"] == "idem-1"


async def test_chat_stream(stub_client_args) -> None:
    stub, kw = stub_client_args
    async with AsyncClient(**kw) as client:
        stream = await client.ai.chat("Hello", stream=True)
        assert isinstance(stream, AsyncStream)
        chunks = [c async for c in stream]
    assert stub.last()["json"] == {"messages": "Hello", "stream": True}
    assert stub.last()["headers"]["accept"] == "text/event-stream"
    assert all(isinstance(c, ChatChunk) for c in chunks)
    assert "".join(c.text for c in chunks) == "Hi there"
    assert chunks[0].content == "Hi" and chunks[-1].content is None
    tool_delta = chunks[2].delta.tool_calls
    assert tool_delta and tool_delta[0].function.name == "f" and tool_delta[0].id == "c1"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage and chunks[-1].usage.total_tokens == 4
    assert chunks[0].inference_id == "inf-2"


async def test_chat_stream_error_event(stub_client_args) -> None:
    _, kw = stub_client_args
    async with AsyncClient(**kw) as client:
        stream = await client.ai.chat("x", model="broken", stream=True)
        with pytest.raises(UpstreamError, match="provider died"):
            async for _ in stream:
                pass


async def test_chat_errors_before_streaming_use_the_status(stub_client_args) -> None:
    _, kw = stub_client_args
    async with AsyncClient(**kw) as client:
        with pytest.raises(NotFoundError) as info:
            await client.ai.chat("x", model="missing")
        assert info.value.code == "unknown_model"
        with pytest.raises(NotFoundError):
            await client.ai.chat("x", model="missing", stream=True)


async def test_embed(stub_client_args) -> None:
    stub, kw = stub_client_args
    async with AsyncClient(**kw) as client:
        one = await client.ai.embed.create("hello")
        many = await client.ai.embed.create(["a", "b"], model="emb", dimensions=2)
    assert isinstance(one, EmbedResult)
    assert one.embeddings == [[0.0, 0.5]] and one.embedding == [0.0, 0.5]
    assert many.embeddings == [[0.0, 0.5], [1.0, 0.5]]
    assert many.data[1].index == 1 and many["model"] == "emb" and many.usage.input_tokens == 3
    assert stub.last()["json"] == {"input": ["a", "b"], "model": "emb", "dimensions": 2}


async def test_feedback(stub_client_args) -> None:
    stub, kw = stub_client_args
    async with AsyncClient(**kw) as client:
        result = await client.feedback("thumbs_up", True, inference_id="inf-1", tags={"user": "u1"})
        with pytest.raises(ValidationError) as info:
            await client.feedback("bad", 1.0, episode_id="ep-1")
    assert isinstance(result, FeedbackResult) and result.feedback_id == "fb-1"
    assert stub.requests[0]["json"] == {
        "metric_name": "thumbs_up",
        "value": True,
        "inference_id": "inf-1",
        "tags": {"user": "u1"},
    }
    assert info.value.status == 422 and info.value.details == {"metric": "bad"}


async def test_error_mapping_and_unreadable_bodies(stub_client_args) -> None:
    _, kw = stub_client_args
    async with AsyncClient(**kw) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.request("GET", "/secret")
        assert (info.value.code, info.value.message, info.value.status) == ("invalid_api_key", "bad key", 401)
        with pytest.raises(InternalServerError):
            await client.request("GET", "/garbage")
        with pytest.raises(NotFoundError):
            await client.request("GET", "/no/such/route")


async def test_environment_defaults(monkeypatch: pytest.MonkeyPatch, tcp_stub) -> None:
    stub, url = tcp_stub
    monkeypatch.setenv("RUNYARD_BASE_URL", url)
    monkeypatch.setenv("RUNYARD_API_KEY", "sk-env")
    async with AsyncClient() as client:
        assert client.base_url == url
        await client.feedback("m", 1)
    assert stub.last()["headers"]["authorization"] == "Bearer sk-env"
    monkeypatch.delenv("RUNYARD_BASE_URL")
    monkeypatch.delenv("RUNYARD_API_KEY")
    client = AsyncClient()
    assert client.base_url == "http://127.0.0.1:8000" and "authorization" not in client._http.headers
    await client.aclose()


async def test_closed_client_refuses_requests(stub_client_args) -> None:
    _, kw = stub_client_args
    client = AsyncClient(**kw)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.feedback("m", 1)


async def test_runyard_package_exports_the_clients() -> None:
    assert runyard.AsyncClient is AsyncClient and runyard.Client is Client


# --------------------------------------------------------------------------- sync Client


def test_sync_client_end_to_end(tcp_stub) -> None:
    stub, url = tcp_stub
    with Client(url, "sk-sync") as client:
        result = client.ai.chat("Hello", model="fast")
        assert isinstance(result, ChatResult) and result.usage.total_tokens == 12
        stream = client.ai.chat("Hello", stream=True)
        assert isinstance(stream, Stream)
        assert "".join(c.text for c in stream) == "Hi there"
        assert client.ai.embed.create(["a"]).embeddings == [[0.0, 0.5]]
        assert client.feedback("thumbs_up", 1.0, episode_id="ep-1").feedback_id == "fb-1"
        with pytest.raises(NotFoundError):
            client.ai.chat("x", model="missing")
        with pytest.raises(UpstreamError):
            for _ in client.ai.chat("x", model="broken", stream=True):
                pass
    assert stub.last()["headers"]["authorization"] == "Bearer sk-sync"
    assert client._portal.closed and not client._portal._thread.is_alive()


def test_sync_stream_close_early(tcp_stub) -> None:
    _, url = tcp_stub
    client = Client(url)
    try:
        with client.ai.chat("Hello", stream=True) as stream:
            assert next(stream).text == "Hi"
        assert stream.response.is_closed
    finally:
        client.close()
    client.close()  # idempotent


# --------------------------------------------------------------------------- embedded / lifespan


def lifespan_app(log: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.append(f"startup:{id(asyncio.current_task())}")
        yield
        log.append(f"shutdown:{id(asyncio.current_task())}")

    async def ping(request: Request) -> Response:
        log.append("ping")
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/ping", ping)], lifespan=lifespan)


async def test_from_app_runs_the_lifespan_lazily_in_one_task() -> None:
    log: list[str] = []
    client = AsyncClient.from_app(lifespan_app(log))
    assert log == []
    assert await client.request("GET", "/ping") == {"ok": True}
    assert await client.request("GET", "/ping") == {"ok": True}
    await client.aclose()
    assert [entry.split(":")[0] for entry in log] == ["startup", "ping", "ping", "shutdown"]
    assert log[0].split(":")[1] == log[-1].split(":")[1]  # entered and exited in the same task


def test_sync_from_app_context_manager_enters_lifespan() -> None:
    log: list[str] = []
    with Client.from_app(lifespan_app(log)) as client:
        assert log[0].startswith("startup")
        assert client.request("GET", "/ping") == {"ok": True}
    assert log[-1].startswith("shutdown")


async def test_failing_lifespan_startup_propagates() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise OSError("database unreachable")
        yield

    client = AsyncClient.from_app(Starlette(lifespan=lifespan))
    with pytest.raises(OSError, match="database unreachable"):
        await client.request("GET", "/")
    await client.aclose()


async def test_custom_retry_transport_is_used_as_is() -> None:
    retry = RetryTransport(httpx.AsyncHTTPTransport(), max_retries=5)
    client = AsyncClient("http://x", transport=retry)
    assert client.transport is retry
    await client.aclose()


def _embedded_config(tmp_path: Any) -> Any:
    pytest.importorskip("runyard.server.app")
    from runyard.config import parse_config

    return parse_config({"storage": {"url": f"sqlite+aiosqlite:///{tmp_path}/runyard.db"}})


async def test_embedded_async_client_talks_to_the_real_app(tmp_path) -> None:
    config = _embedded_config(tmp_path)
    async with AsyncClient.embedded(config) as client:
        assert client.base_url == "http://runyard.embedded"
        assert await client.request("GET", "/healthz")
        result = await client.ai.chat("hello world", model="dummy::echo")
        assert result.content and "hello world" in result.content
        stream = await client.ai.chat("hello world", model="dummy::echo", stream=True)
        text = "".join([c.text async for c in stream])
        assert "hello world" in text
        emb = await client.ai.embed.create(["a", "b"], model="dummy::embed")
        assert len(emb.embeddings) == 2


def test_embedded_sync_client(tmp_path) -> None:
    config = _embedded_config(tmp_path)
    with Client.embedded(config) as client:
        assert "hi" in (client.ai.chat("hi", model="dummy::echo").content or "")
        assert "hi" in "".join(c.text for c in client.ai.chat("hi", model="dummy::echo", stream=True))
