"""Request ids agree everywhere: the X-Request-Id header, error bodies, the access log's
JSON lines and the inference rows; a caller's well-formed id is kept, any other replaced.
Also the start-up banner and the WARNING line of a failed upstream call."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gateway import GatewayProcess
from support.openai_mock import B, MockOpenAI
from support.store_rows import inference_rows
from support.telemetry_config import ADMIN_KEY, gateway_env, write_config

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi there"}]}


@pytest.fixture
def logged_gateway(tmp_path: Path, mock_openai: MockOpenAI) -> Iterator[tuple[GatewayProcess, Path]]:
    config = write_config(tmp_path, mock_openai.url)
    gw = GatewayProcess(config, env=gateway_env(), args=["--access-log", "--log-format", "json"]).start()
    try:
        yield gw, tmp_path / "runyard.db"
    finally:
        gw.stop()


def log_lines(gw: GatewayProcess) -> list[dict[str, Any]]:
    lines = gw.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_request_ids_agree_in_headers_bodies_logs_and_rows(
    logged_gateway: tuple[GatewayProcess, Path], mock_openai: MockOpenAI
) -> None:
    gw, db = logged_gateway
    kept = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={**AUTH, "X-Request-Id": "client-id-1"})
    assert kept.status_code == 200 and kept.headers["x-request-id"] == "client-id-1"
    made = httpx.post(
        gw.url + "/v1/chat/completions", json=CHAT, headers={**AUTH, "X-Request-Id": "bad id\t!"}
    )  # a cache hit
    made_id = made.headers["x-request-id"]
    assert made.status_code == 200 and re.fullmatch(r"req_[0-9a-f]{24}", made_id)
    missing = httpx.post(gw.url + "/v1/chat/completions", json={**CHAT, "model": "nope"}, headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]
    unauth = httpx.get(gw.url + "/v1/models")
    assert unauth.status_code == 401 and unauth.json()["error"]["request_id"] == unauth.headers["x-request-id"]
    mock_openai.script(B.status(500))
    fresh = {**CHAT, "messages": [{"role": "user", "content": "not cached"}]}
    failed = httpx.post(gw.url + "/v1/chat/completions", json=fresh, headers={**AUTH, "X-Request-Id": "client-id-2"})
    assert failed.status_code == 502 and failed.json()["error"]["request_id"] == "client-id-2"
    gw.stop()  # flushes the recorder; the log is complete

    rows = inference_rows(db, "request_id", "status", "model", "provider")
    assert rows == [
        ("client-id-1", "ok", "gpt", "mock"),
        (made_id, "ok", "gpt", "mock"),
        ("client-id-2", "error", "gpt", "mock"),
    ]

    lines = log_lines(gw)
    access = {
        line["request_id"]: line
        for line in lines
        if line["logger"] == "runyard.access" and line["path"] != "/healthz"  # the start-up polls
    }
    assert set(access) == {
        "client-id-1", made_id, missing.headers["x-request-id"], unauth.headers["x-request-id"], "client-id-2",
    }  # fmt: skip
    first = access["client-id-1"]
    usage = kept.json()["usage"]
    assert first["method"] == "POST" and first["path"] == "/v1/chat/completions" and first["status"] == 200
    assert first["model"] == "gpt" and first["provider"] == "mock" and first["key_id"]
    assert first["input_tokens"] == usage["prompt_tokens"] and first["output_tokens"] == usage["completion_tokens"]
    assert first["latency_ms"] > 0
    assert access[unauth.headers["x-request-id"]]["status"] == 401
    assert access["client-id-2"]["status"] == 502
    # the failed upstream call: WARNING with provider, status, latency
    warning = next(line for line in lines if line["logger"] == "runyard.upstream")
    assert warning["level"] == "warning"
    assert "mock" in warning["message"] and "status 502" in warning["message"] and " ms" in warning["message"]
    # the banner, as one JSON line with its fields
    banner = next(line for line in lines if line.get("event") == "started")
    assert banner["listening"] == gw.url and banner["providers"]["mock"] is True
    assert banner["apps"] and banner["store"].startswith("sqlite+aiosqlite:///")


def test_text_banner_and_no_access_log(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    config = write_config(tmp_path, mock_openai.url)
    gw = GatewayProcess(config, env=gateway_env(), args=["--no-access-log"]).start()
    try:
        assert httpx.get(gw.url + "/healthz").headers["x-request-id"].startswith("req_")
    finally:
        gw.stop()
    log = gw.log_path.read_text()
    assert f"listening on {gw.url}" in log and "mock (key set)" in log and "openai (key not set)" in log
    assert "GET /healthz" not in log
