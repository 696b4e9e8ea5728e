"""Bad input gets a typed 4xx (never a 500 or a hang); auth; invalid config files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from runyard.config import ConfigError, hash_api_key, load_config, parse_config
from support.e2e import MAX_BODY
from support.gateway import GatewayProcess

CHAT_PATHS = ["/v1/ai/chat", "/v1/chat/completions"]


@pytest.mark.parametrize("path", CHAT_PATHS)
@pytest.mark.parametrize(
    "body,status,code",
    [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"[1, 2]", None, None),
        (b'{"model": "gpt"}', 422, "validation_error"),
        (b'{"model": "gpt", "messages": []}', 422, "validation_error"),
        (b'{"model": "gpt", "messages": [{"role": "wizard", "content": "x"}]}', 422, "validation_error"),
        (
            b'{"model": "gpt", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            422,
            "validation_error",
        ),
        (
            b'{"model": "gpt", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
            422,
            "validation_error",
        ),
        (b'{"model": "nope::x", "messages": [{"role": "user", "content": "x"}]}', 404, "provider_not_found"),
        (b'{"model": "unknown", "messages": [{"role": "user", "content": "x"}]}', 404, "model_not_found"),
    ],
)
def test_bad_chat_input(
    gateway_server: GatewayProcess, path: str, body: bytes, status: int | None, code: str | None
) -> None:
    resp = httpx.post(gateway_server.url + path, content=body, headers={"content-type": "application/json"})
    assert 400 <= resp.status_code < 500
    error = resp.json()["error"]
    assert error["message"]
    if status is not None:
        assert (resp.status_code, error["code"]) == (status, code)


@pytest.mark.parametrize("path", ["/v1/ai/embed", "/v1/embeddings"])
def test_embedding_dimensions_are_bounded(gateway_server: GatewayProcess, path: str) -> None:
    # A huge size is refused up front (it once reached the provider as an allocation: a 500).
    body = {"model": "mock::mock-embedding", "input": ["x"], "dimensions": 2**53 - 1}
    resp = httpx.post(gateway_server.url + path, json=body)
    assert (resp.status_code, resp.json()["error"]["code"]) == (422, "validation_error")


def test_missing_model(gateway_server: GatewayProcess) -> None:
    body = {"messages": [{"role": "user", "content": "x"}]}
    resp = httpx.post(gateway_server.url + "/v1/chat/completions", json=body)
    assert (resp.status_code, resp.json()["error"]["code"]) == (400, "missing_model")
    # The native API routes instead; no priced model of that vendor has its key configured.
    resp = httpx.post(gateway_server.url + "/v1/ai/chat", json={**body, "vendor": "mock"})
    assert (resp.status_code, resp.json()["error"]["code"]) == (400, "no_model_available")


def test_oversized_body(gateway_server: GatewayProcess) -> None:
    big = b'{"model": "gpt", "messages": [{"role": "user", "content": "' + b"x" * (MAX_BODY + 10) + b'"}]}'
    resp = httpx.post(gateway_server.url + "/v1/chat/completions", content=big)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "body_too_large"

    def chunks():  # no Content-Length: the cap is enforced while reading
        for _ in range(0, len(big), 65536):
            yield big[:65536]

    resp = httpx.post(gateway_server.url + "/v1/ai/chat", content=chunks())
    assert resp.status_code == 413


def test_unknown_route_and_method(gateway_server: GatewayProcess) -> None:
    resp = httpx.get(gateway_server.url + "/v1/nothing-here")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "route_not_found"
    resp = httpx.get(gateway_server.url + "/v1/chat/completions")
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"


def test_bad_embed_and_feedback_input(gateway_server: GatewayProcess) -> None:
    resp = httpx.post(gateway_server.url + "/v1/embeddings", json={"model": "embed", "input": []})
    assert resp.status_code == 422
    resp = httpx.post(gateway_server.url + "/v1/ai/embed", json={"model": "embed", "input": 42})
    assert resp.status_code == 422
    resp = httpx.post(gateway_server.url + "/v1/feedback", json={"metric_name": "thumbs_up", "value": True})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_feedback_target"
    resp = httpx.post(
        gateway_server.url + "/v1/feedback", json={"metric_name": "thumbs_up", "value": True, "inference_id": "nope"}
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_id"


def test_invalid_config_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "runyard.toml"
    bad.write_text('[providers.mock]\nkind = "openai"\nbase_urll = "http://x"\n\n[server]\nport = "eighty"\n')
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "providers.mock.base_urll: unknown key" in str(err.value)
    assert "server.port" in str(err.value)
    proc = subprocess.run(
        [sys.executable, "-m", "runyard", "serve", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "providers.mock.base_urll: unknown key" in proc.stderr


@pytest.mark.parametrize(
    "data,fragment",
    [
        ({"models": {"m": {"routes": ["ghost::x"]}}}, "models.m.routes[0]: unknown provider 'ghost'"),
        ({"models": {"m": {"routes": ["no-separator"]}}}, "models.m.routes"),
        ({"providers": {"p": {"kind": "martian"}}}, "providers.p.kind"),
        ({"server": {"api_keys": ["plain-text-key"]}}, "server.api_keys"),
        ({"metrics": {"m": {"type": "stars"}}}, "metrics.m.type"),
    ],
)
def test_config_errors(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert fragment in str(err.value)


def test_config_env_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RY_TEST_URL", "http://127.0.0.1:9/v1")
    config = parse_config({"providers": {"p": {"kind": "openai", "base_url": "${RY_TEST_URL}"}}})
    assert config.providers["p"].base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(ConfigError, match="RY_UNSET_VAR"):
        parse_config({"providers": {"p": {"kind": "openai", "base_url": "${RY_UNSET_VAR}"}}})


@pytest.fixture(scope="module")
def auth_gateway(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("auth")
    path = root / "runyard.toml"
    path.write_text(
        f'[server]\napi_keys = ["{hash_api_key("sk-right")}"]\n\n[storage]\nurl = "sqlite+aiosqlite:///{root}/a.db"\n'
    )
    server = GatewayProcess(path).start()
    yield server
    server.stop()


@pytest.mark.parametrize("path", ["/v1/ai/chat", "/v1/chat/completions", "/v1/models", "/v1/feedback", "/inference"])
def test_auth_required_on_every_route(auth_gateway: GatewayProcess, path: str) -> None:
    method = "GET" if path == "/v1/models" else "POST"
    body = {"model": "dummy::echo", "messages": [{"role": "user", "content": "x"}]}
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "Basic abc"}):
        resp = httpx.request(method, auth_gateway.url + path, json=body, headers=headers)
        assert resp.status_code == 401, (path, headers)
        assert resp.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")


def test_auth_accepts_right_key_and_healthz_is_open(auth_gateway: GatewayProcess) -> None:
    resp = httpx.post(
        auth_gateway.url + "/v1/ai/chat",
        json={"model": "dummy::echo", "messages": "hi"},
        headers={"Authorization": "Bearer sk-right"},
    )
    assert resp.status_code == 200 and resp.json()["content"] == "echo: hi"
    assert httpx.get(auth_gateway.url + "/healthz").status_code == 200
    assert "sk-right" not in auth_gateway.log()
