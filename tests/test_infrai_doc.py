"""Infrai's reference doc (seed 003), driven through Runyard's SDK as its users write it:
``from runyard import ai``, ``timeout_seconds``, routed embeddings and images, ``tts(input=)`` with
``audio_url``, ``asr(audio={url|base64})`` with segments, ``vision(images=[...])``,
``realtime.token`` and the streamed ``_metadata``.

The upstream is an OpenAI-compatible aiohttp server on 127.0.0.1; each test runs embedded and
over HTTP against a real ``runyard serve``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from runyard.client import AsyncClient
from runyard.config import parse_config
from runyard.errors import CapabilityNotAvailableError, InvalidRequestError, TimeoutError
from support.gateway import client_for
from support.media_upstream import WAV, Upstream


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with Upstream() as server:
        yield server


def _config(tmp_path: Path, upstream: Upstream, **extra: Any) -> dict[str, Any]:
    return {
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path}/r.db"},
        "files": {"dir": str(tmp_path / "files")},
        "catalog": {"defaults": False},
        "providers": {"up": {"kind": "openai", "base_url": upstream.url + "/v1"}},
        "webhooks": {"allow_private_webhooks": True},  # the test's audio URL is on loopback
        "embedding_models": {"emb-small": {"routes": ["up::emb-1"], "capabilities": ["embed"]}},
        "models": {
            "img-cheap": {
                "routes": ["up::img-a"],
                "capabilities": ["image"],
                "price": {"input": 1, "output": 1},
                "quality": 2,
            },
            "img-best": {
                "routes": ["up::img-b"],
                "capabilities": ["image"],
                "price": {"input": 9, "output": 9},
                "quality": 5,
            },
        },
        **extra,
    }


@pytest.fixture(params=["embedded", "http"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncClient]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with client_for(request.param, _config(tmp_path, upstream), tmp_path) as c:
        yield c


def test_module_level_ai_namespace_from_the_environment(tmp_path: Path) -> None:
    """``from runyard import ai`` works as the doc writes it, configured from the environment."""
    config = tmp_path / "runyard.toml"
    config.write_text(f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path}/r.db"\n')
    script = (
        "from runyard import ai\n"
        "r = ai.chat('Hi', model='dummy::echo')\n"
        "print(r['content'], r['_metadata'].get('vendor'), r['_metadata'].get('request_id') == r.inference_id)\n"
        "print(type(ai.embed).__name__, type(ai.image).__name__, callable(ai.vision), callable(ai.tts),"
        " callable(ai.asr), callable(ai.realtime.token))\n"
    )
    env = {**os.environ, "RUNYARD_CONFIG": str(config)}
    env.pop("RUNYARD_BASE_URL", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["echo: Hi dummy True", "Embeddings Images True True True True"]
    assert "Task was destroyed" not in out.stderr


async def test_timeout_seconds_bounds_the_call(client: AsyncClient, upstream: Upstream) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError) as err:
        await client.ai.chat("Tell me a story", model="up::slow-model", timeout_seconds=1)
    elapsed = time.monotonic() - started
    assert err.value.status == 504 and err.value.code == "timeout"
    assert elapsed < 4.5, elapsed  # the upstream takes 5 s; before, the call waited for it
    with pytest.raises(InvalidRequestError) as bad:
        await client.ai.chat("hi", model="up::m", timeout_seconds=-1)
    assert bad.value.code == "invalid_timeout"
    ok = await client.ai.chat("hi", model="up::fast", timeout_seconds=30)
    assert ok.content == "a raccoon"
    assert "timeout_seconds" not in upstream.seen["chat"]


async def test_embed_create_without_a_model_routes_to_the_embedding_model(
    client: AsyncClient, upstream: Upstream
) -> None:
    result = await client.ai.embed.create("What animal has clever paws?")
    assert upstream.seen["embed"]["model"] == "emb-1"
    data = result.get("data") or result.get("embeddings") or []
    vector = data[0].get("embedding") if data and isinstance(data[0], dict) else data[0]
    assert vector == [0.1, 0.2, 0.0]
    assert result.model == "emb-small"
    with pytest.raises(InvalidRequestError) as err:
        await client.ai.embed.create("x", vendor="nobody")
    assert err.value.code == "no_model_available"


async def test_image_generate_routes_by_prefer_and_vendor(client: AsyncClient, upstream: Upstream) -> None:
    result = await client.ai.image.generate("A cozy reading nook", size="1024x1024", n=1, prefer="cheapest")
    assert upstream.seen["image"]["model"] == "img-a"
    assert "prefer" not in upstream.seen["image"] and "vendor" not in upstream.seen["image"]
    images = result.get("images") or result.get("data") or []
    assert images[0].get("url") == "https://img.example/1.png"
    await client.ai.image.generate("A cozy reading nook", prefer="smartest", vendor="up")
    assert upstream.seen["image"]["model"] == "img-b"
    with pytest.raises(CapabilityNotAvailableError):
        await client.ai.image.generate("x", vendor="elsewhere")


async def test_tts_with_input_gives_bytes_audio_url_and_format(client: AsyncClient, upstream: Upstream) -> None:
    r = await client.ai.tts(input="Hello from Infrai.", voice="alloy", format="mp3", model="up::tts-1")
    assert r.audio == b"ID3-fake-mp3" and r.format == "mp3"
    assert r.audio_url and r.audio_url.endswith(f"/v1/files/{r.file_id}/content")
    assert upstream.seen["speech"]["input"] == "Hello from Infrai."
    stored = await client.files.download(r.file_id) if hasattr(client.files, "download") else None
    if stored is None:
        response = await client._http.get(f"/v1/files/{r.file_id}/content")
        stored = response.content
    assert stored == b"ID3-fake-mp3"


async def test_asr_takes_url_and_base64_audio_and_returns_language_and_segments(
    client: AsyncClient, upstream: Upstream
) -> None:
    r = await client.ai.asr(audio={"url": upstream.url + "/clip.wav"}, language="en", model="up::whisper-1")
    assert upstream.seen["asr"]["file"] == WAV and upstream.seen["asr"]["language"] == "en"
    assert upstream.seen["asr"]["response_format"] == "verbose_json"
    assert r.text == "hello world" and r.language == "english"
    assert r.segments == [{"id": 0, "start": 0.0, "end": 1.5, "text": "hello world"}]
    b64 = base64.b64encode(WAV).decode()
    r = await client.ai.asr(audio={"base64": b64, "mime": "audio/wav"}, model="up::gpt-4o-transcribe")
    assert upstream.seen["asr"]["file"] == WAV and upstream.seen["asr"]["content_type"] == "audio/wav"
    assert upstream.seen["asr"]["response_format"] == "json" and r.segments is None


async def test_asr_url_goes_through_the_url_guard(tmp_path: Path, upstream: Upstream) -> None:
    config = _config(tmp_path, upstream, webhooks={"allow_private_webhooks": False})
    async with AsyncClient.embedded(config=parse_config(config)) as client:
        with pytest.raises(InvalidRequestError) as err:
            await client.ai.asr(audio={"url": upstream.url + "/clip.wav"}, model="up::whisper-1")
        assert err.value.code == "url_not_allowed"
        assert "asr" not in upstream.seen


async def test_vision_keyword_form_with_url_and_base64_images(client: AsyncClient, upstream: Upstream) -> None:
    r = await client.ai.vision(
        prompt="What's in this image?",
        images=[{"url": "https://example.com/photo.jpg"}, {"base64": "iVBORw0KGgo=", "mime": "image/png"}],
        model="up::gpt-4o-mini",
    )
    assert r.content == "a raccoon"
    parts = upstream.seen["chat"]["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "What's in this image?"}
    assert parts[1]["image_url"]["url"] == "https://example.com/photo.jpg"
    assert parts[2]["image_url"]["url"] == "data:image/png;base64,iVBORw0KGgo="


async def test_realtime_token(client: AsyncClient, upstream: Upstream) -> None:
    tok = await client.ai.realtime.token(ttl_seconds=300, voice="verse")
    assert (tok.session_id, tok.token, tok.expires_at) == ("sess_1", "ek_test_123", 1_900_000_000)
    assert tok.ice_servers == [] and tok.provider == "up"
    assert upstream.seen["realtime"]["model"] == "gpt-4o-realtime-preview"
    assert upstream.seen["realtime"]["client_secret"] == {"expires_after": {"anchor": "created_at", "seconds": 300}}


async def test_realtime_token_without_a_capable_provider_is_a_typed_400(tmp_path: Path) -> None:
    config = {"storage": {"url": f"sqlite+aiosqlite:///{tmp_path}/r.db"}, "catalog": {"defaults": False}}
    async with AsyncClient.embedded(config=parse_config(config)) as client:
        with pytest.raises(CapabilityNotAvailableError) as err:
            await client.ai.realtime.token()
        assert err.value.status == 400


async def test_streamed_chat_exposes_metadata_at_the_end(client: AsyncClient, upstream: Upstream) -> None:
    plain = await client.ai.chat("Tell me a story", model="up::m")
    stream = await client.ai.chat("Tell me a 50-word story about a curious raccoon.", model="up::m", stream=True)
    text = "".join([chunk.text async for chunk in stream])
    assert text == "a raccoon"
    meta = stream.get("_metadata")
    assert meta is not None and meta == stream.metadata
    assert set(plain.metadata) <= set(meta)
    assert meta["vendor"] == "up" and meta["model"] == "up::m" and meta["request_id"]


def _sync_stream_metadata(config: dict[str, Any]) -> Iterator[Any]:
    from runyard import Client

    with Client.embedded(config=parse_config(config)) as sync:
        stream = sync.ai.chat("Tell me a story", model="up::m", stream=True)
        chunks = list(stream)
        yield chunks, stream.metadata


async def test_sync_stream_metadata(tmp_path: Path, upstream: Upstream) -> None:
    chunks, meta = await asyncio.to_thread(lambda: next(_sync_stream_metadata(_config(tmp_path, upstream))))
    assert "".join(c.text for c in chunks) == "a raccoon"
    assert meta["request_id"] == chunks[-1].inference_id and meta["vendor"] == "up"


def _doc_streaming_example(config: dict[str, Any]) -> list[str]:
    """The doc's first example, as written: a streamed result read like a dict."""
    from runyard import Client

    with Client.embedded(config=parse_config(config)) as sync:
        result = sync.ai.chat("Tell me a 50-word story about a curious raccoon.", model="up::m", stream=True)
        return [
            result.get("text") or result.get("content"),
            result["_metadata"].get("request_id"),
            result["_metadata"].get("vendor"),
        ]


async def test_doc_example_stream_read_as_a_result(tmp_path: Path, upstream: Upstream) -> None:
    text, request_id, vendor = await asyncio.to_thread(_doc_streaming_example, _config(tmp_path, upstream))
    assert text == "a raccoon" and request_id and vendor == "up"


async def test_async_stream_final(client: AsyncClient, upstream: Upstream) -> None:
    stream = await client.ai.chat("story", model="up::m", stream=True)
    whole = await stream.final()
    assert whole["content"] == "a raccoon" and whole["_metadata"]["vendor"] == "up"
    assert whole["finish_reason"] == "stop" and whole["usage"].total_tokens == 5


async def test_cache_strategy_infrai_is_runyards_cache(client: AsyncClient, upstream: Upstream) -> None:
    question = f"same question {uuid.uuid4()}"  # the shared (Redis) cache outlives a test in a scale-out run
    first = await client.ai.chat(question, model="up::m", cache_strategy="infrai")
    upstream.seen.pop("chat")
    again = await client.ai.chat(question, model="up::m", cache_strategy="infrai")
    assert "chat" not in upstream.seen  # served from the cache
    assert again.metadata["cache_hit"] is True and again.content == first.content
    assert (await client.ai.chat(question, model="up::m", cache_strategy="infrai", temperature=0.5)).content
