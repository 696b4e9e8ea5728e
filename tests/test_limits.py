"""API keys and limits against a real ``runyard serve`` (and embedded): requests per window
(sync and async), tokens per window, spending limits (persisted across restarts), revocation
on a running server, X-RateLimit-* headers on every response, /v1/usage and /v1/usage/limits
(also through the real ``simstudio-sdk``), and the SDK's retry after Retry-After.

The rate window is 2 s here (``[limits] window_s``), so "per minute" limits play out quickly.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard import AuthenticationError, RateLimitError, UsageLimitError
from runyard.backends.limits import InProcessLimitBackend
from runyard.backends.store import Store
from runyard.client import Client
from runyard.config import hash_api_key, parse_config
from runyard.services.limits import ASYNC, DEFERRED, NOT_METERED, SYNC, classify
from support.gateway import GatewayProcess

ADMIN_KEY = "ry_admin_test_key"
PRICE_IN, PRICE_OUT = 1000.0, 2000.0  # USD per 1M tokens: a word costs $0.001 in, $0.002 out
PROMPT = "one two three"  # dummy::echo answers "echo: one two three": 3 input, 4 output tokens
CALL_COST = (3 * PRICE_IN + 4 * PRICE_OUT) / 1e6  # $0.011


def config_toml(db: Path, extra: str = "") -> str:
    return f"""
[server]
api_keys = ["{hash_api_key(ADMIN_KEY)}"]
api_key_refresh_s = 0.2

[storage]
url = "sqlite+aiosqlite:///{db}"
flush_interval_ms = 20

[limits]
window_s = 2
{extra}

[models.priced]
routes = ["dummy::echo"]
price = {{input = {PRICE_IN}, output = {PRICE_OUT}}}

[models.other]
routes = ["dummy::echo"]
price = {{input = 10.0, output = 10.0}}
"""


def add_key(config_path: Path, name: str, *, workspace: str = "default", **limits: Any) -> tuple[str, str]:
    """A key created in the store, the way ``runyard keys create`` does: (id, secret)."""
    cfg = parse_config(__import__("tomllib").loads(config_path.read_text()))
    secret = f"ry_{name}_{time.monotonic_ns()}"

    async def create() -> str:
        store = Store(cfg.storage.url)
        try:
            await store.start()
            return await store.add_api_key(name, hash_api_key(secret), workspace=workspace, **limits)
        finally:
            await store.aclose()

    return asyncio.run(create()), secret


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "runyard", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits")
    path = root / "runyard.toml"
    path.write_text(config_toml(root / "runyard.db"))
    add_key(path, "bootstrap")  # the store is migrated and holds a key before the server starts
    return path


@pytest.fixture(scope="module")
def server(config_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(config_path).start()
    try:
        yield gw
    finally:
        gw.stop()


def chat(url: str, key: str, model: str = "priced", prompt: str = PROMPT) -> httpx.Response:
    return httpx.post(
        url + "/v1/ai/chat",
        json={"model": model, "messages": [{"role": "user", "content": prompt}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def rate_headers(response: httpx.Response) -> tuple[int, int, int]:
    h = response.headers
    return int(h["x-ratelimit-limit"]), int(h["x-ratelimit-remaining"]), int(h["x-ratelimit-reset"])


# --------------------------------------------------------------------------- backend


async def test_gcra_is_exact_and_refusals_do_not_count() -> None:
    backend = InProcessLimitBackend(horizon_s=1.0)
    results = [await backend.hit("k", 3, 1.0) for _ in range(3)]
    assert [r[0] for r in results] == [True, True, True]
    assert [r[1] for r in results] == [2, 1, 0]
    allowed, remaining, retry_after = await backend.hit("k", 3, 1.0)
    assert not allowed and remaining == 0 and 0.3 < retry_after <= 1 / 3 + 0.01
    assert (await backend.hit("k", 3, 1.0, cost=0))[1] == 0  # a peek changes nothing
    await asyncio.sleep(retry_after + 0.01)
    assert (await backend.hit("k", 3, 1.0))[0]  # exactly one more fits after Retry-After
    assert not (await backend.hit("k", 3, 1.0))[0]
    assert (await backend.hit("other", 3, 1.0))[1] == 2  # keys are independent


async def test_token_window_and_period_totals() -> None:
    backend = InProcessLimitBackend(horizon_s=0.5, resolution_s=0.01)
    backend.add_usage("k", 10, 0.5)
    backend.add_usage("k", 5, 0.25)
    tokens, cost, reset = await backend.get_usage("k", 0.5)
    assert (tokens, cost) == (15, 0.75) and 0 < reset <= 0.5
    await asyncio.sleep(0.55)
    assert (await backend.get_usage("k", 0.5))[:2] == (0, 0.0)  # the window slid past them
    await backend.seed_usage("k", "month", 100, 2.0)  # the store's totals hold the 15 tokens added
    month_tokens, month_cost, month_reset = await backend.get_usage("k", "month")
    assert month_tokens == 100 and month_cost == pytest.approx(2.0) and month_reset > 0
    assert (await backend.get_usage("k", "day"))[:2] == (15, pytest.approx(0.75))


def test_classification() -> None:
    assert classify("POST", "/v1/ai/chat") == SYNC
    assert classify("POST", "/v1/chat/completions") == SYNC
    assert classify("POST", "/v1/runs") == DEFERRED  # the route decides: async unless it waits
    assert classify("POST", "/v1/ai/batch") == ASYNC
    assert classify("GET", "/v1/tasks/x") == NOT_METERED
    assert classify("POST", "/v1/tasks/x/cancel") == NOT_METERED
    assert classify("POST", "/v1/feedback") == NOT_METERED


# --------------------------------------------------------------------------- over HTTP


def test_rpm_429_with_headers_then_sdk_retry_succeeds(server: GatewayProcess, config_path: Path) -> None:
    _, key = add_key(config_path, "rpm", rpm_sync=2)
    first, second = chat(server.url, key), chat(server.url, key)
    assert first.status_code == second.status_code == 200
    assert rate_headers(first)[:2] == (2, 1) and rate_headers(second)[:2] == (2, 0)
    refused = chat(server.url, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    limit, remaining, reset = rate_headers(refused)
    assert (limit, remaining) == (2, 0) and time.time() - 1 <= reset <= time.time() + 3
    retry_after = int(refused.headers["retry-after"])
    assert retry_after == 1  # window 2 s / limit 2: one request fits again after 1 s

    with Client(server.url, api_key=key, max_retries=2) as client:
        started = time.monotonic()
        result = client.ai.chat(PROMPT, model="priced")  # 429 first, retried after Retry-After
        waited = time.monotonic() - started
        assert result.content and waited >= 0.5
        info = client.get_rate_limit_info()
        assert info is not None and info.limit == 2 and info.remaining == 0 and info.reset >= int(time.time())

    with Client(server.url, api_key=key, max_retries=0) as client:
        with pytest.raises(RateLimitError) as caught:
            client.ai.chat(PROMPT, model="priced")
        assert caught.value.code == "RATE_LIMIT_EXCEEDED" and caught.value.retry_after == 1
        info = client.get_rate_limit_info()
        assert info is not None and info.remaining == 0 and info.retry_after == 1


def test_headers_on_every_authenticated_response(server: GatewayProcess, config_path: Path) -> None:
    _, key = add_key(config_path, "headers", rpm_sync=100)
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as http:
        responses = {
            "models": http.get("/v1/models"),
            "not found": http.get("/v1/nope"),
            "invalid": http.post("/v1/ai/chat", json={"model": "priced"}),
            "bad json": http.post("/v1/chat/completions", content=b"{"),
            "usage": http.get("/v1/usage"),
            "limits": http.get("/v1/usage/limits"),
            "inference": chat(server.url, key),
        }
        with http.stream(
            "POST",
            "/v1/ai/chat",
            json={"model": "priced", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ) as streamed:
            body = streamed.read()
            responses["stream"] = streamed
        assert b"data:" in body
        for name, response in responses.items():
            limit, remaining, reset = rate_headers(response)  # present, and integers
            assert limit == 100 and 0 <= remaining <= 100 and reset > 0, name
    _, slow = add_key(config_path, "reads", rpm_sync=2)  # one request back per second
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {slow}"}, timeout=10) as http:
        # reads do not consume the limit; each inference does
        assert [rate_headers(http.get("/v1/models"))[1] for _ in range(3)] == [2, 2, 2]
        assert rate_headers(chat(server.url, slow))[1] == 1
        assert rate_headers(http.get("/v1/tasks"))[1] == 1
    unauthenticated = httpx.get(server.url + "/v1/models")
    assert unauthenticated.status_code == 401 and "x-ratelimit-limit" not in unauthenticated.headers
    assert "x-ratelimit-limit" not in httpx.get(server.url + "/healthz").headers


def test_async_runs_count_separately(server: GatewayProcess, config_path: Path) -> None:
    _, key = add_key(config_path, "async", rpm_sync=50, rpm_async=1)
    auth = {"Authorization": f"Bearer {key}"}
    body = {"app": "runyard/chat", "input": {"model": "priced", "prompt": "hi"}}
    queued = httpx.post(server.url + "/v1/runs", json=body, headers=auth, timeout=10)
    assert queued.status_code == 201, queued.text
    assert rate_headers(queued)[:2] == (1, 0)  # the async limit
    refused = httpx.post(server.url + "/v1/runs", json=body, headers=auth, timeout=10)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert rate_headers(refused)[:2] == (1, 0) and int(refused.headers["retry-after"]) == 2
    assert chat(server.url, key).status_code == 200  # sync calls have their own budget
    waited = httpx.post(server.url + "/v1/runs", json={**body, "wait": 10}, headers=auth, timeout=20)
    assert waited.status_code in (200, 202) and rate_headers(waited)[0] == 50  # a run that waits is sync


def test_tokens_per_window(server: GatewayProcess, config_path: Path) -> None:
    _, key = add_key(config_path, "tpm", tpm=10)
    assert chat(server.url, key, prompt="a b c d e f").status_code == 200  # 6 in + 7 out = 13 tokens
    refused = chat(server.url, key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMIT_EXCEEDED" and "token" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert refused.headers["x-ratelimit-limit-tokens"] == "10"
    time.sleep(int(refused.headers["retry-after"]) + 0.1)
    assert chat(server.url, key).status_code == 200  # the tokens left the window


def test_spending_limit_blocks_and_survives_restart(config_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "runyard.toml"
    path.write_text(config_toml(tmp_path / "spend.db"))
    _, key = add_key(path, "spend", spend_limit=2.5 * CALL_COST, period="day")
    gw = GatewayProcess(path).start()
    try:
        assert [chat(gw.url, key).status_code for _ in range(3)] == [200, 200, 200]  # $0.033 spent
        blocked = chat(gw.url, key)
        assert blocked.status_code == 429
        assert blocked.json()["error"]["code"] == "USAGE_LIMIT_EXCEEDED"
        assert int(blocked.headers["retry-after"]) >= 1  # until the day ends
        assert chat(gw.url, key, model="other").status_code == 429  # every model counts
        with Client(gw.url, api_key=key) as client:
            started = time.monotonic()
            with pytest.raises(UsageLimitError) as caught:
                client.ai.chat(PROMPT, model="priced")
            assert time.monotonic() - started < 5  # not retried: the wait is longer than worth it
            assert caught.value.status == 429 and caught.value.code == "USAGE_LIMIT_EXCEEDED"
            limits = client.get_usage_limits()
            assert limits.usage["currentPeriodCost"] == pytest.approx(3 * CALL_COST)
            assert limits.usage["limit"] == pytest.approx(2.5 * CALL_COST)
            assert limits.usage["isExceeded"] is True and limits.usage["period"] == "day"
            # reads still work while over the limit
            assert client.usage(group_by="key").total["requests"] == 3
    finally:
        gw.stop()
    gw = GatewayProcess(path).start()  # a restart reads the day's spend back from the inferences
    try:
        again = chat(gw.url, key)
        assert again.status_code == 429 and again.json()["error"]["code"] == "USAGE_LIMIT_EXCEEDED"
    finally:
        gw.stop()


def test_revoked_key_is_refused_at_once_on_a_running_server(server: GatewayProcess, config_path: Path) -> None:
    created = cli("keys", "create", "--name", "doomed", "--rpm-sync", "30", "--config", str(config_path))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    key_id = created.stdout.split()[2]
    assert chat(server.url, key).status_code == 200  # a key created after start works at once
    listed = cli("keys", "list", "--json", "--config", str(config_path))
    rows = {row["id"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows[key_id]["rpm_sync"] == 30 and rows[key_id]["revoked_at"] is None
    assert key not in listed.stdout and "key_hash" not in listed.stdout  # no secrets
    revoked = cli("keys", "revoke", key_id, "--config", str(config_path))
    assert revoked.returncode == 0, revoked.stderr
    done = time.monotonic()
    status = chat(server.url, key).status_code
    while status != 401 and time.monotonic() - done < 2:
        time.sleep(0.05)
        status = chat(server.url, key).status_code
    assert status == 401
    assert time.monotonic() - done < 1.0  # api_key_refresh_s = 0.2 here (1 s by default)
    with Client(server.url, api_key=key) as client, pytest.raises(AuthenticationError):
        client.ai.chat("hi", model="priced")
    rows = {
        row["id"]: row
        for row in map(json.loads, cli("keys", "list", "--json", "--config", str(config_path)).stdout.splitlines())
    }
    assert rows[key_id]["revoked_at"] is not None


def test_usage_aggregates_by_key_model_and_day(tmp_path: Path) -> None:
    path = tmp_path / "runyard.toml"
    path.write_text(config_toml(tmp_path / "usage.db"))
    a_id, a = add_key(path, "a", workspace="team")
    b_id, b = add_key(path, "b", workspace="team")
    c_id, c = add_key(path, "c", workspace="other")
    gw = GatewayProcess(path).start()
    try:
        for key, model, prompt in [
            (a, "priced", PROMPT),
            (a, "priced", "x y"),
            (a, "other", PROMPT),
            (b, "priced", PROMPT),
        ]:
            assert chat(gw.url, key, model=model, prompt=prompt).status_code == 200
        assert chat(gw.url, c, model="priced").status_code == 200
        with Client(gw.url, api_key=a) as client:
            report = client.usage(group_by=["key", "model"])
        rows = {(r["key"], r["model"]): r for r in report.data}
        assert set(rows) == {(a_id, "priced"), (a_id, "other"), (b_id, "priced")}  # workspace "team" only
        ap = rows[(a_id, "priced")]
        assert (ap["requests"], ap["input_tokens"], ap["output_tokens"]) == (2, 5, 7)
        assert ap["cost"] == pytest.approx((5 * PRICE_IN + 7 * PRICE_OUT) / 1e6)
        assert rows[(a_id, "other")]["cost"] == pytest.approx((3 * 10 + 4 * 10) / 1e6)
        assert ap["key_name"] == "a" and ap["cached_tokens"] == 0 and ap["reasoning_tokens"] == 0
        assert report.total["requests"] == 4

        with Client(gw.url, api_key=ADMIN_KEY) as admin:  # the operator's key sees every workspace
            by_day = admin.usage(group_by="day")
            assert len(by_day.data) == 1 and by_day.data[0]["requests"] == 5
            assert by_day.data[0]["day"] == time.strftime("%Y-%m-%d", time.gmtime())
            assert admin.usage(group_by="key", key=c_id).total["requests"] == 1
            assert admin.usage(until="2000-01-01").data == []
            assert admin.usage(since="2000-01-01T00:00:00Z").total["requests"] == 5
        bad = httpx.get(gw.url + "/v1/usage?group_by=colour", headers={"Authorization": f"Bearer {a}"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_group_by"
    finally:
        gw.stop()


def test_usage_limits_shape_and_the_real_simstudio_sdk(server: GatewayProcess, config_path: Path) -> None:
    _, key = add_key(config_path, "sim", rpm_sync=7, rpm_async=3, spend_limit=5.0, period="month")
    assert chat(server.url, key).status_code == 200
    body = httpx.get(server.url + "/v1/usage/limits", headers={"X-API-Key": key}).json()
    assert body["success"] is True
    sync, asynchronous = body["rateLimit"]["sync"], body["rateLimit"]["async"]
    assert set(sync) == set(asynchronous) == {"isLimited", "limit", "remaining", "resetAt"}
    assert sync["limit"] == 7 and sync["remaining"] in (6, 7) and sync["isLimited"] is False  # 1 back per 0.29 s
    assert (asynchronous["limit"], asynchronous["remaining"]) == (3, 3)
    assert sync["resetAt"].endswith("Z") and body["rateLimit"]["authType"] == "api"
    assert body["usage"]["currentPeriodCost"] == pytest.approx(CALL_COST)
    assert body["usage"]["limit"] == 5.0 and body["usage"]["plan"] == "custom"

    simstudio = pytest.importorskip("simstudio")
    sim = simstudio.SimStudioClient(api_key=key, base_url=server.url)
    try:
        limits = sim.get_usage_limits()  # GET /api/users/me/usage-limits with X-API-Key
        assert limits.success is True
        assert limits.rate_limit["sync"]["limit"] == 7 and limits.rate_limit["async"]["remaining"] == 3
        assert limits.usage["currentPeriodCost"] == pytest.approx(CALL_COST) and limits.usage["plan"] == "custom"
        info = sim.get_rate_limit_info()  # read from the X-RateLimit-* headers (integers only)
        assert info is not None and info.limit == 7 and info.remaining in (6, 7) and info.reset >= int(time.time())
    finally:
        sim.close()


# --------------------------------------------------------------------------- embedded


def test_embedded_limits_and_rate_limit_info(tmp_path: Path) -> None:
    config = parse_config(
        {
            "server": {"api_keys": [hash_api_key(ADMIN_KEY)]},
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'e.db'}"},
            "limits": {"rpm_sync": 3, "window_s": 2},
        }
    )
    with Client.embedded(config, api_key=ADMIN_KEY, max_retries=0) as client:
        assert client.get_rate_limit_info() is None  # before any request
        client.ai.chat("hi", model="dummy::echo")
        info = client.get_rate_limit_info()
        assert info is not None and (info.limit, info.remaining) == (3, 2)
        limits = client.get_usage_limits()
        assert limits.rate_limit["sync"]["remaining"] == 2 and limits.usage["plan"] == "default"
        client.ai.chat("hi", model="dummy::echo")
        client.ai.chat("hi", model="dummy::echo")
        with pytest.raises(RateLimitError) as caught:
            client.ai.chat("hi", model="dummy::echo")
        assert caught.value.code == "RATE_LIMIT_EXCEEDED"


def test_unauthenticated_per_ip_mode(tmp_path: Path) -> None:
    config = parse_config(
        {
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ip.db'}"},
            "limits": {"rpm_sync": 1, "window_s": 2, "unauthenticated": "per_ip", "spend_limit": 0},
        }
    )
    with Client.embedded(config, max_retries=0) as client:
        client.ai.chat("hi", model="dummy::echo")  # spend limits are not applied per IP
        with pytest.raises(RateLimitError):
            client.ai.chat("hi", model="dummy::echo")
        limits = client.get_usage_limits()
        assert limits.rate_limit["authType"] == "none" and limits.rate_limit["sync"]["limit"] == 1
    off = parse_config({"storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'off.db'}"}, "limits": {"rpm_sync": 1}})
    with Client.embedded(off, max_retries=0) as client:  # the default: no identity, no limits
        for _ in range(3):
            client.ai.chat("hi", model="dummy::echo")
        assert client.get_rate_limit_info() is None
