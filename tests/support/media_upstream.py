"""An OpenAI-compatible upstream with chat, embeddings, audio, images and realtime sessions: a
real aiohttp server on 127.0.0.1 (in the test's loop, or in a thread of its own with
:class:`ThreadedUpstream` for module-scoped and sync use)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from support.aiohttp_loopback import AiohttpLoopback

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(24)


class Upstream(AiohttpLoopback):
    """An OpenAI-compatible upstream with chat (``slow-*`` models sleep 5 s), embeddings,
    audio, images and realtime sessions; ``seen`` keeps the last body per route."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, Any] = {}

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/chat/completions", self.chat)
        router.add_post("/v1/embeddings", self.embeddings)
        router.add_post("/v1/audio/speech", self.speech)
        router.add_post("/v1/audio/transcriptions", self.transcriptions)
        router.add_post("/v1/images/generations", self.images)
        router.add_post("/v1/realtime/sessions", self.realtime)
        router.add_get("/clip.wav", self.clip)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = self.seen["chat"] = await request.json()
        if body["model"].startswith("slow"):
            await asyncio.sleep(5)
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for piece in ("a ", "raccoon"):
                chunk = {"id": "c", "model": body["model"], "choices": [{"index": 0, "delta": {"content": piece}}]}
                await response.write(b"data: " + web.json_response(chunk).body + b"\n\n")  # type: ignore[operator]
            final = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
            await response.write(b"data: " + web.json_response(final).body + b"\n\ndata: [DONE]\n\n")  # type: ignore[operator]
            return response
        message = {"role": "assistant", "content": "a raccoon"}
        return web.json_response(
            {"id": "c", "model": body["model"], "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
             "usage": usage}
        )  # fmt: skip

    async def embeddings(self, request: web.Request) -> web.Response:
        body = self.seen["embed"] = await request.json()
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        data = [{"index": i, "embedding": [0.1, 0.2, float(i)]} for i in range(len(texts))]
        return web.json_response({"data": data, "model": body["model"], "usage": {"prompt_tokens": 2}})

    async def speech(self, request: web.Request) -> web.Response:
        self.seen["speech"] = await request.json()
        return web.Response(body=b"ID3-fake-mp3", content_type="audio/mpeg")

    async def transcriptions(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        self.seen["asr"] = {
            "model": form["model"],
            "response_format": form["response_format"],
            "file": upload.file.read(),
            "content_type": upload.content_type,
            "language": form.get("language"),
        }
        answer: dict[str, Any] = {"text": "hello world", "language": "english", "duration": 1.5}
        if form["response_format"] == "verbose_json":
            answer["segments"] = [{"id": 0, "start": 0.0, "end": 1.5, "text": "hello world", "tokens": [1, 2]}]
        return web.json_response(answer)

    async def images(self, request: web.Request) -> web.Response:
        self.seen["image"] = await request.json()
        return web.json_response({"created": 1, "data": [{"url": "https://img.example/1.png"}]})

    async def realtime(self, request: web.Request) -> web.Response:
        body = self.seen["realtime"] = await request.json()
        secret = {"value": "ek_test_123", "expires_at": 1_900_000_000}
        return web.json_response({"id": "sess_1", "object": "realtime.session", "model": body["model"],
                                  "voice": body.get("voice", "alloy"), "client_secret": secret})  # fmt: skip

    async def clip(self, request: web.Request) -> web.Response:
        return web.Response(body=WAV, content_type="audio/wav")


class ThreadedUpstream:
    """:class:`Upstream` on an event loop in a background thread."""

    def __init__(self) -> None:
        self.upstream = Upstream()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="media-upstream", daemon=True)

    @property
    def url(self) -> str:
        return self.upstream.url

    @property
    def seen(self) -> dict[str, Any]:
        return self.upstream.seen

    def start(self) -> ThreadedUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.upstream.start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.upstream.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
