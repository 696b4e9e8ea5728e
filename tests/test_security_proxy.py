"""Upstream provider calls honour ``HTTPS_PROXY`` / ``NO_PROXY`` and a custom CA bundle, on both
client stacks (the pool for JSON and streams, aiohttp for other bodies). The upstream is the mock OpenAI server over
TLS with a throwaway CA; the proxy is a real CONNECT proxy on 127.0.0.1 (tests/support)."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.connect_proxy import ConnectProxy
from support.gateway import GatewayProcess
from support.openai_mock import MockOpenAI
from support.tls import make_ca_and_cert


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca_and_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_upstream(certs: tuple[Path, Path, Path]) -> Iterator[MockOpenAI]:
    _, cert, key = certs
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mock = MockOpenAI()
    mock.ssl_context = context
    mock.start()
    try:
        yield mock
    finally:
        mock.stop()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    p = ConnectProxy().start()
    try:
        yield p
    finally:
        p.stop()


def _gateway(root: Path, upstream: MockOpenAI, env: dict[str, str], ca_bundle: Path | None) -> GatewayProcess:
    bundle = f'ca_bundle = "{ca_bundle}"' if ca_bundle else ""
    path = root / "runyard.toml"
    path.write_text(f"""
[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"

[providers.up]
kind = "openai"
base_url = "{upstream.url}"
api_key_env = "UP_TEST_KEY"
{bundle}
""")
    clean = {"HTTP_PROXY": "", "http_proxy": "", "HTTPS_PROXY": "", "https_proxy": "", "NO_PROXY": "", "no_proxy": ""}
    both_cases = {**env, **{k.lower(): v for k, v in env.items() if k.endswith("_PROXY")}}
    return GatewayProcess(path, env={**clean, "UP_TEST_KEY": "sk-test", **both_cases}).start()


def _calls(server: GatewayProcess) -> list[int]:
    """A chat and a streamed chat (the pool), then speech (aiohttp): the mock upstream has no speech
    route: its 404 (a 400 to our caller) shows that call reached the upstream."""
    body = {"model": "up::gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    plain = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=20)
    streamed = httpx.post(f"{server.url}/v1/chat/completions", json={**body, "stream": True}, timeout=20)
    assert b"data:" in streamed.content or streamed.status_code != 200
    speech = {"model": "up::tts-1", "input": "hi", "voice": "alloy"}
    spoken = httpx.post(f"{server.url}/v1/audio/speech", json=speech, timeout=20)
    assert "no route POST /v1/audio/speech" in spoken.text, spoken.text  # the upstream's own words
    return [plain.status_code, streamed.status_code, spoken.status_code]


def test_upstream_calls_go_through_the_https_proxy(
    tmp_path: Path, tls_upstream: MockOpenAI, proxy: ConnectProxy, certs: tuple[Path, Path, Path]
) -> None:
    server = _gateway(tmp_path, tls_upstream, {"HTTPS_PROXY": proxy.url}, certs[0])
    try:
        assert _calls(server) == [200, 200, 400], server.log()
    finally:
        server.stop()
    target = f"localhost:{tls_upstream.port}"
    assert proxy.tunnels.count(target) >= 2, proxy.tunnels  # one per client stack (each keeps its connection)
    assert set(proxy.tunnels) == {target}


def test_proxy_credentials_in_the_url_are_sent_on_connect(
    tmp_path: Path, tls_upstream: MockOpenAI, proxy: ConnectProxy, certs: tuple[Path, Path, Path]
) -> None:
    """``HTTPS_PROXY=http://user:pass@host:port``: both client stacks authenticate their CONNECT."""
    with_credentials = proxy.url.replace("http://", "http://gw-user:s%3Dcret@")
    server = _gateway(tmp_path, tls_upstream, {"HTTPS_PROXY": with_credentials}, certs[0])
    try:
        assert _calls(server) == [200, 200, 400], server.log()
        assert "s%3Dcret" not in server.log() and "s=cret" not in server.log()
    finally:
        server.stop()
    expected = "Basic " + base64.b64encode(b"gw-user:s=cret").decode()
    assert len(proxy.auths) >= 2 and set(proxy.auths) == {expected}, proxy.auths


def test_no_proxy_hosts_are_reached_directly(
    tmp_path: Path, tls_upstream: MockOpenAI, proxy: ConnectProxy, certs: tuple[Path, Path, Path]
) -> None:
    env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "localhost,127.0.0.1"}
    server = _gateway(tmp_path, tls_upstream, env, certs[0])
    try:
        assert _calls(server) == [200, 200, 400], server.log()
    finally:
        server.stop()
    assert proxy.tunnels == []


def test_ssl_cert_file_is_trusted_and_unknown_cas_are_not(
    tmp_path: Path, tls_upstream: MockOpenAI, certs: tuple[Path, Path, Path]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    server = _gateway(tmp_path / "a", tls_upstream, {"SSL_CERT_FILE": str(certs[0])}, None)
    try:
        assert _calls(server) == [200, 200, 400], server.log()
    finally:
        server.stop()
    untrusted = _gateway(tmp_path / "b", tls_upstream, {}, None)
    try:
        body = {"model": "up::gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        resp = httpx.post(f"{untrusted.url}/v1/chat/completions", json=body, timeout=20)
        assert resp.status_code == 502 and resp.json()["error"]["code"] == "upstream_unreachable", resp.text
    finally:
        untrusted.stop()
