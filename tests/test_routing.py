"""Task/prefer routing over a priced catalog, failover under a cost cap, circuit breakers,
the response cache, idempotent duplicates and exact cost accounting (embedded gateway,
real mock upstream over HTTP)."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runyard import Client, InvalidRequestError, ServiceUnavailableError, UpstreamError
from runyard.config import parse_config
from support.gateway import GatewayProcess
from support.openai_mock import B, MockOpenAI

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def catalog_config(mock_url: str, db: Path, **routing: object) -> dict:
    provider = {"kind": "openai", "base_url": mock_url, "timeout": 2.0}
    return {
        "storage": {"url": f"sqlite+aiosqlite:///{db}", "flush_interval_ms": 10},
        "catalog": {"defaults": False},
        "routing": {"breaker_failures": 1000, **routing},
        "providers": {"up": provider, "up2": provider},
        "models": {
            "m-cheap": {
                "routes": ["up::cheap-model"],
                "capabilities": ["chat"],
                "price": {"input": 0.1, "output": 0.4},
                "quality": 1,
                "tasks": ["general"],
            },
            "m-mid": {
                "routes": ["up::mid-model"],
                "capabilities": ["chat", "tools", "json_schema"],
                "price": {"input": 1.0, "output": 4.0, "cached": 0.25},
                "quality": 3,
                "tasks": ["general", "coding"],
            },
            "m-smart": {
                "routes": ["up::smart-model"],
                "capabilities": ["chat", "tools", "json_schema", "vision"],
                "price": {"input": 10.0, "output": 40.0},
                "quality": 5,
                "tasks": ["general", "coding", "reasoning"],
            },
            "m-unpriced": {"routes": ["up::free-model"], "capabilities": ["chat", "tools", "vision"], "quality": 5},
            "flaky": {"routes": ["up::flaky-primary", "up2::flaky-backup"], "routable": False},
        },
    }


@pytest.fixture
def client(mock_openai: MockOpenAI, tmp_path: Path) -> Iterator[Client]:
    with Client.embedded(parse_config(catalog_config(mock_openai.url, tmp_path / "r.db")), max_retries=0) as c:
        yield c


def sent_models(mock: MockOpenAI) -> list[str]:
    return [r["json"]["model"] for r in mock.requests]


def test_prefer_picks_among_capable_models(client: Client, mock_openai: MockOpenAI) -> None:
    cheapest = client.ai.chat("hi", prefer="cheapest")
    assert cheapest.model == "m-cheap" and cheapest.content == "echo: hi"
    assert "prefer=cheapest" in cheapest.metadata["route_reason"]
    assert client.ai.chat("hi", prefer="smartest").model == "m-smart"  # unpriced models are never routed to
    assert client.ai.chat("hi", prefer="cheapest", tools=[TOOL]).model == "m-mid"  # m-cheap lacks tools
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
    assert client.ai.chat([image], prefer="cheapest").model == "m-smart"  # only m-smart has vision
    assert client.ai.chat("hi", prefer="cheapest", task="coding").model == "m-mid"
    assert client.ai.chat("hi", prefer="balanced").model == "m-mid"
    assert sent_models(mock_openai) == [
        "cheap-model", "smart-model", "mid-model", "smart-model", "mid-model", "mid-model",
    ]  # fmt: skip
    with pytest.raises(InvalidRequestError) as err:
        client.ai.chat("hi", task="reasoning", tools=[TOOL], vendor="up2")
    assert err.value.code == "no_model_available"


def test_failover_respects_cost_cap(client: Client, mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.status(500))
    with pytest.raises(UpstreamError) as err:
        client.ai.chat("hi", prefer="cheapest", tools=[TOOL])  # m-mid, then m-smart is 10x: over the 1.5x cap
    assert sent_models(mock_openai) == ["mid-model"]
    codes = [a["code"] for a in err.value.details["attempts"]]
    assert "over_cost_cap" in codes and "upstream_error" in codes
    mock_openai.reset()
    mock_openai.script(B.status(500))
    result = client.ai.chat("hi", prefer="cheapest", tools=[TOOL], max_cost_multiplier=20)
    assert result.model == "m-smart"
    assert [a["provider"] + ":" + str(a["code"]) for a in result.metadata["attempts"]] == [
        "up:upstream_error",
        "up:None",
    ]
    assert sent_models(mock_openai) == ["mid-model", "smart-model"]


def test_circuit_breaker_opens_and_recovers(mock_openai: MockOpenAI, tmp_path: Path) -> None:
    config = parse_config(
        catalog_config(mock_openai.url, tmp_path / "b.db", breaker_failures=2, breaker_cooldown_s=0.5)
    )
    with Client.embedded(config, max_retries=0) as client:
        mock_openai.script(B.status(500), B.delay(0), B.status(500))  # primary fails, backup answers; twice
        for _ in range(2):
            assert client.ai.chat("x", model="flaky").provider == "up2"
        assert sent_models(mock_openai) == ["flaky-primary", "flaky-backup"] * 2
        status = client.request("GET", "/v1/status")["circuits"]
        assert status["up::flaky-primary"]["state"] == "open"
        mock_openai.reset()
        assert client.ai.chat("x", model="flaky").provider == "up2"
        assert sent_models(mock_openai) == ["flaky-backup"], "an open circuit is skipped without a call"
        time.sleep(0.6)
        mock_openai.reset()
        assert client.ai.chat("x", model="flaky").provider == "up"  # half-open trial succeeds
        status = client.request("GET", "/v1/status")
        assert status["circuits"]["up::flaky-primary"]["state"] == "closed"
        recorder = status["recorder"]  # 4 chats answered: each recorded or waiting to be
        assert recorder["buffered"] + recorder["written"] == 4 and recorder["dropped"] == 0


def test_all_circuits_open_fails_fast(mock_openai: MockOpenAI, tmp_path: Path) -> None:
    config = parse_config(catalog_config(mock_openai.url, tmp_path / "c.db", breaker_failures=1, breaker_cooldown_s=30))
    with Client.embedded(config, max_retries=0) as client:
        mock_openai.script(B.status(500), B.status(500))
        with pytest.raises(UpstreamError):
            client.ai.chat("x", model="flaky")
        with pytest.raises(ServiceUnavailableError) as err:
            client.ai.chat("x", model="flaky")
        assert err.value.code == "circuit_open"
        assert len(mock_openai.requests) == 2


def test_cache_hit_is_identical_and_free(client: Client, mock_openai: MockOpenAI) -> None:
    first = client.ai.chat("cache me", model="m-mid", cache_strategy="runyard")
    second = client.ai.chat("cache me", model="m-mid", cache_strategy="runyard")
    assert second.content == first.content
    assert second.metadata["cache_hit"] is True and second.metadata["cost"] == 0
    assert first.metadata["cache_hit"] is False and first.metadata["cost"] > 0
    assert second.inference_id != first.inference_id
    assert len(mock_openai.requests) == 1
    client.ai.chat("cache me", model="m-mid", cache_strategy="none")  # per-request opt-out
    client.ai.chat("cache me", model="m-mid", cache_strategy="runyard", temperature=0.5)  # other params: a miss
    assert len(mock_openai.requests) == 3


def test_cost_accounting_with_cached_and_reasoning_tokens(client: Client, mock_openai: MockOpenAI) -> None:
    usage = {
        "prompt_tokens": 1_000,
        "completion_tokens": 500,  # includes the 200 reasoning tokens, as OpenAI reports them
        "total_tokens": 1_500,
        "prompt_tokens_details": {"cached_tokens": 400},
        "completion_tokens_details": {"reasoning_tokens": 200},
    }
    mock_openai.script(B.reply("priced", usage=usage))
    result = client.ai.chat("price me", model="m-mid")
    expected = (600 * 1.0 + 400 * 0.25 + 500 * 4.0) / 1e6  # uncached in, cached in, output (incl. reasoning)
    assert result.metadata["cost"] == pytest.approx(expected, abs=1e-15)
    assert (result.usage.cached_tokens, result.usage.reasoning_tokens) == (400, 200)
    row = client.request("GET", f"/v1/inferences/{result.inference_id}")
    assert row["cost"] == pytest.approx(expected, abs=1e-15)
    assert (row["cached_tokens"], row["reasoning_tokens"]) == (400, 200)


@pytest.fixture
def routing_server(mock_openai: MockOpenAI, tmp_path: Path) -> Iterator[GatewayProcess]:
    import tomli_w

    path = tmp_path / "runyard.toml"
    path.write_bytes(tomli_w.dumps(catalog_config(mock_openai.url, tmp_path / "s.db")).encode())
    server = GatewayProcess(path).start()
    yield server
    server.stop()


def test_concurrent_duplicates_run_upstream_once(routing_server: GatewayProcess, mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.delay(0.5))
    body = {"model": "m-mid", "messages": "only once"}
    headers = {"Idempotency-Key": "dup-1"}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(httpx.post, f"{routing_server.url}/v1/ai/chat", json=body, headers=headers, timeout=10)
            for _ in range(4)
        ]
        answers = [f.result().json() for f in futures]
    assert len({a["inference_id"] for a in answers}) == 1
    assert len(mock_openai.requests) == 1


def test_native_fields_stay_out_of_the_upstream_body(routing_server: GatewayProcess, mock_openai: MockOpenAI) -> None:
    # The usual body is read in one pydantic pass; one with vendor/prompt/batch_mode or a string for
    # messages goes the general way. Both must route alike, send no native field upstream and file
    # the tags and episode; a bad native field gets the general way's typed error.
    native = {"task", "prefer", "cache_strategy", "max_cost_multiplier", "tags", "episode_id", "idempotency_key"}
    episode = "0192a7c4-5b5e-7c3d-8e4f-0123456789ab"
    common = {
        "task": "coding",
        "prefer": "cheapest",
        "cache_strategy": "none",
        "max_cost_multiplier": 2,
        "tags": {"team": "a"},
        "episode_id": episode.upper(),
        "timeout_seconds": 5,
        "top_k": 3,  # an unknown parameter: passed through
    }
    bodies = [
        {**common, "messages": [{"role": "user", "content": "hi"}], "idempotency_key": "plain"},
        {**common, "messages": "hi", "idempotency_key": "general"},
        {**common, "prompt": "hi", "vendor": "up", "idempotency_key": "vendor"},
    ]
    for body in bodies:
        answer = httpx.post(f"{routing_server.url}/v1/ai/chat", json=body, timeout=10).json()
        assert answer["model"] == "m-mid" and answer["episode_id"] == episode, answer
        sent = mock_openai.requests[-1]["json"]
        assert sent["top_k"] == 3 and sent["model"] == "mid-model"
        assert not native & set(sent) and "timeout_seconds" not in sent and "vendor" not in sent
        row = httpx.get(f"{routing_server.url}/v1/inferences/{answer['inference_id']}", timeout=10)
        for _ in range(50):  # recorded off the request path
            if row.status_code == 200:
                break
            time.sleep(0.05)
            row = httpx.get(f"{routing_server.url}/v1/inferences/{answer['inference_id']}", timeout=10)
        assert row.json()["tags"] == {"team": "a"} and row.json()["episode_id"] == episode
    assert len(mock_openai.requests) == 3
    for bad, code in (({"tags": {"team": 1}}, "invalid_tags"), ({"episode_id": "nope"}, "invalid_id")):
        body = {**bodies[0], **bad}
        reply = httpx.post(f"{routing_server.url}/v1/ai/chat", json=body, timeout=10)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == code, reply.text
    reply = httpx.post(f"{routing_server.url}/v1/ai/chat", json={**bodies[0], "prefer": "fastest"}, timeout=10)
    assert reply.status_code == 422 and "prefer" in reply.text


@pytest.mark.sqlite_only("the scale-out run gives every config a [redis] table: Redis holds the cache")
def test_the_cache_is_bounded_in_bytes_dropping_the_oldest(tmp_path: Path) -> None:
    """``[cache] max_bytes``: long answers fill the in-process cache long before ``max_entries``;
    the oldest make room. Answers of 30 KB (echoed prompts) in a 100 KB cache: the newest three stay;
    one of 150 KB is not kept."""
    config = {
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"},
        "cache": {"strategy": "runyard", "max_bytes": 100_000},
    }
    prompts = [f"{i} " + "x" * 30_000 for i in range(5)]
    with Client.embedded(parse_config(config), max_retries=0) as client:
        for prompt in prompts:
            assert len(client.ai.chat(prompt, model="dummy::echo").content or "") >= 30_000
        huge = "y" * 150_000  # alone over the bound: not cached, and the others stay
        assert [client.ai.chat(huge, model="dummy::echo").metadata["cache_hit"] for _ in range(2)] == [False, False]
        again = [client.ai.chat(p, model="dummy::echo").metadata["cache_hit"] for p in reversed(prompts)]
    assert again == [True, True, True, False, False]
