"""Audio, image and vision routing, and the local providers' behaviour without the local extra.

Runs with or without the extra: the upstream is a small OpenAI-compatible aiohttp server on
127.0.0.1, and "not installed" is simulated where the extra is present.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from runyard.client import AsyncClient
from runyard.config import parse_config
from runyard.errors import CapabilityNotAvailableError, ServiceUnavailableError
from runyard.providers import llamacpp, piper, st_embeddings
from support.aiohttp_loopback import AiohttpLoopback


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


@pytest.fixture
def no_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without the ``local`` extra: the runtimes cannot be imported (``None`` in
    ``sys.modules`` is the interpreter's own "not importable" marker; nothing of ours is patched)."""
    for name in ("llama_cpp", "sentence_transformers", "piper", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)
    assert not (llamacpp.runtime_installed() or st_embeddings.runtime_installed() or piper.runtime_installed())


def _config(tmp_path: Any, **extra: Any) -> Any:
    return parse_config(
        {"storage": {"url": f"sqlite+aiosqlite:///{tmp_path}/r.db"}, "files": {"dir": str(tmp_path / "f")}, **extra}
    )


async def test_without_the_extra_local_models_are_unlisted_and_name_the_extra(
    tmp_path: Any, no_keys: None, no_local: None
) -> None:
    async with AsyncClient.embedded(config=_config(tmp_path)) as client:
        ids = {m["id"] for m in (await client.request("GET", "/v1/models"))["data"]}
        assert not {"local::chat", "local::embed", "local::tts"} & ids
        for call in (
            client.ai.chat("hi", model="local::chat"),
            client.ai.embed.create("hi", model="local::embed"),
            client.ai.tts("hi", model="local::tts"),
        ):
            with pytest.raises(ServiceUnavailableError) as err:
                await call
            assert err.value.code == "runtime_not_installed"
            assert "runyard[local]" in err.value.message
        # the rest of the gateway is unaffected
        assert (await client.ai.chat("still works", model="dummy::echo")).content == "echo: still works"


async def test_capability_not_available_is_a_typed_400(tmp_path: Any, no_keys: None, no_local: None) -> None:
    async with AsyncClient.embedded(config=_config(tmp_path)) as client:
        calls = [
            client.ai.tts("hello"),
            client.ai.asr(b"RIFF0000WAVE"),
            client.ai.image.generate("a lighthouse at dusk"),
            client.ai.vision("what is this?", "https://example.com/cat.png"),
            client.ai.vision("what is this?", "https://example.com/cat.png", model="dummy::echo"),
            client.ai.image.generate("a cat", model="dummy::echo"),
        ]
        for call in calls:
            with pytest.raises(CapabilityNotAvailableError) as err:
                await call
            assert err.value.status == 400
            assert err.value.code == "CAPABILITY_NOT_AVAILABLE"
        r = await client._http.post("/v1/ai/asr", json={"audio": base64.b64encode(b"x").decode()})
        assert r.status_code == 400 and r.json()["error"]["code"] == "CAPABILITY_NOT_AVAILABLE"


@pytest.fixture
async def upstream() -> AsyncIterator[dict[str, Any]]:
    """An OpenAI-compatible upstream with audio, images and chat; records what it was sent."""
    seen: dict[str, Any] = {}

    async def speech(request: web.Request) -> web.Response:
        seen["speech"] = await request.json()
        return web.Response(body=b"ID3-fake-mp3", content_type="audio/mpeg")

    async def transcriptions(request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        seen["asr"] = {"model": form["model"], "file": upload.file.read(), "filename": upload.filename}
        return web.json_response({"text": "hello world", "language": "en", "duration": 1.5})

    async def images(request: web.Request) -> web.Response:
        seen["image"] = await request.json()
        return web.json_response({"created": 1, "data": [{"b64_json": base64.b64encode(b"PNGDATA").decode()}]})

    async def chat(request: web.Request) -> web.Response:
        seen["chat"] = await request.json()
        return web.json_response(
            {
                "id": "c1",
                "model": seen["chat"]["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "a cat"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/images/generations", images)
    app.router.add_post("/v1/chat/completions", chat)
    async with AiohttpLoopback(app) as server:
        yield {"url": server.url + "/v1", "seen": seen}


async def test_media_through_an_openai_compatible_upstream(
    tmp_path: Any, upstream: dict[str, Any], no_keys: None, no_local: None
) -> None:
    config = _config(tmp_path, providers={"up": {"kind": "openai", "base_url": upstream["url"]}})
    seen = upstream["seen"]
    async with AsyncClient.embedded(config=config) as client:
        speech = await client.ai.tts("Hello there", model="up::tts-1", voice="nova", format="mp3")
        assert speech.audio == b"ID3-fake-mp3" and speech.media_type == "audio/mpeg"
        assert seen["speech"] == {"model": "tts-1", "input": "Hello there", "voice": "nova", "response_format": "mp3"}

        text = await client.ai.asr(b"RIFFfakewav", filename="hello.wav")  # no model: the upstream's default
        assert text.text == "hello world" and text.language == "en" and text.provider == "up"
        assert seen["asr"] == {"model": "whisper-1", "file": b"RIFFfakewav", "filename": "hello.wav"}

        image = await client.ai.image.generate("a lighthouse", model="up::gpt-image-1", size="256x256")
        assert image.image_bytes() == b"PNGDATA"
        assert seen["image"] == {"model": "gpt-image-1", "prompt": "a lighthouse", "size": "256x256"}

        seen_result = await client.ai.vision("What animal?", "https://example.com/cat.png", model="up::gpt-4o-mini")
        assert seen_result.content == "a cat"
        content = seen["chat"]["messages"][0]["content"]
        assert content[0] == {"type": "text", "text": "What animal?"}
        assert content[1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}

        for inference_id, kind in ((text.inference_id, "asr"), (image.inference_id, "image")):
            row = await client.request("GET", f"/v1/inferences/{inference_id}")
            assert row["kind"] == kind and row["provider"] == "up"

        # OpenAI-compatible routes too
        r = await client._http.post("/v1/images/generations", json={"model": "up::dall-e-3", "prompt": "x"})
        assert r.status_code == 200 and r.json()["data"][0]["b64_json"]
        r = await client._http.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", b"RIFF")},
            data={"model": "up::whisper-1"},
        )
        assert r.status_code == 200 and r.json()["text"] == "hello world"


async def test_upstream_capabilities_option_narrows_what_it_is_asked(
    tmp_path: Any, upstream: dict[str, Any], no_keys: None, no_local: None
) -> None:
    providers = {"up": {"kind": "openai", "base_url": upstream["url"], "options": {"capabilities": ["chat"]}}}
    async with AsyncClient.embedded(config=_config(tmp_path, providers=providers)) as client:
        with pytest.raises(CapabilityNotAvailableError):
            await client.ai.asr(b"RIFF", model="up::whisper-1")
        assert "asr" not in upstream["seen"]


def test_json_modes_are_always_grammar_constrained() -> None:
    from runyard.inference import ChatRequest

    def args(rf: dict[str, Any]) -> dict[str, Any]:
        request = ChatRequest.model_validate({"messages": [{"role": "user", "content": "x"}], "response_format": rf})
        return llamacpp._call_args(request)[0]

    # json_object (and an empty schema): the bounded object grammar, never free text
    assert args({"type": "json_object"})[llamacpp._GRAMMAR_KEY] == ""
    assert args({"type": "json_schema", "json_schema": {"name": "s", "schema": {}}})[llamacpp._GRAMMAR_KEY] == ""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    spec = args({"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})[llamacpp._GRAMMAR_KEY]
    assert json.loads(spec) == schema
    assert llamacpp.JSON_OBJECT_GRAMMAR.strip().startswith("root")
