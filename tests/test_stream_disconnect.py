"""A client that leaves a chat stream early ends it upstream too, over HTTP and in process: the
gateway notices the disconnect while it waits for the upstream's next chunk, closes the upstream
connection, and goes on serving."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Literal

import pytest
from aiohttp import web

from support.aiohttp_loopback import AiohttpLoopback
from support.gateway import client_for


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "slow",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + json.dumps(data).encode() + b"\n\n"


class SlowStream(AiohttpLoopback):
    """Streams one chunk, then waits (up to 10 s) for more to send; notes when the gateway hangs up."""

    def __init__(self) -> None:
        super().__init__()
        self.hung_up = asyncio.Event()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/chat/completions", self.chat)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            message = {"role": "assistant", "content": "whole"}
            return web.json_response(
                {"id": "c2", "object": "chat.completion", "created": 0, "model": "slow",
                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
            )  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk({"role": "assistant", "content": "first"}))
        for _ in range(500):
            await asyncio.sleep(0.02)
            if request.transport is None or request.transport.is_closing():
                self.hung_up.set()
                return response
        await response.write(_chunk({"content": " last"}, "stop") + b"data: [DONE]\n\n")
        return response


@pytest.mark.parametrize("mode", ["http", "embedded"])
async def test_leaving_a_stream_early_closes_it_upstream(mode: Literal["http", "embedded"], tmp_path: Path) -> None:
    async with SlowStream() as upstream:
        config = {
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"},
            "catalog": {"defaults": False},
            "providers": {"slow": {"kind": "openai", "base_url": upstream.url + "/v1"}},
            "models": {"slow": {"routes": ["slow::slow"]}},
        }
        async with client_for(mode, config, tmp_path) as client:
            stream = await client.ai.chat("hi", model="slow", stream=True)
            first = await stream.__anext__()
            assert first.content == "first"
            await stream.aclose()
            await asyncio.wait_for(upstream.hung_up.wait(), timeout=5)  # not after the upstream's 10 s
            assert (await client.ai.chat("hi", model="slow")).content == "whole"  # still serving
