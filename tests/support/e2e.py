"""End-to-end fixtures: a gateway config over the mock upstreams, a real ``runyard serve``
subprocess, and SDK clients over both transports (HTTP and embedded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard import Client
from runyard.config import load_config
from support.gateway import GatewayProcess
from support.openai_mock import MockOpenAI

MAX_BODY = 256 * 1024


def gateway_toml(openai_url: str, anthropic_url: str, db_path: Path) -> str:
    return f"""
[server]
max_body_bytes = {MAX_BODY}

[routing]
breaker_failures = 1000  # fault tests share this gateway; breakers are tested on their own

[storage]
url = "sqlite+aiosqlite:///{db_path}"
flush_interval_ms = 20

[providers.mock]
kind = "openai"
base_url = "{openai_url}"
api_key_env = "RUNYARD_TEST_UPSTREAM_KEY"
timeout = 1.0

[providers.backup]
kind = "openai"
base_url = "{openai_url}"
timeout = 1.0

[providers.claude]
kind = "anthropic"
base_url = "{anthropic_url}"
api_key_env = "RUNYARD_TEST_UPSTREAM_KEY"
timeout = 1.0

[models.gpt]
routes = ["mock::gpt-test"]

[models.gpt-with-fallback]
routes = ["mock::gpt-primary", "backup::gpt-secondary"]

[models.claude]
routes = ["claude::claude-test"]

[embedding_models.embed]
routes = ["mock::embed-test"]

[metrics.thumbs_up]
type = "boolean"
level = "inference"

[metrics.score]
type = "float"
level = "inference"

[metrics.solved]
type = "boolean"
level = "episode"
"""


@pytest.fixture(scope="session")
def gateway_config_path(
    tmp_path_factory: pytest.TempPathFactory, _mock_openai_server: MockOpenAI, _mock_anthropic_server: object
) -> Path:
    root = tmp_path_factory.mktemp("gateway")
    path = root / "runyard.toml"
    anthropic_url = getattr(_mock_anthropic_server, "url")  # noqa: B009 - typed loosely on purpose
    path.write_text(gateway_toml(_mock_openai_server.url, anthropic_url, root / "runyard.db"))
    return path


@pytest.fixture(scope="session")
def upstream_key_env() -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("RUNYARD_TEST_UPSTREAM_KEY", "sk-upstream-test")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def gateway_server(gateway_config_path: Path, upstream_key_env: None) -> Iterator[GatewayProcess]:
    server = GatewayProcess(gateway_config_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=["http", "embedded"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def sdk_client(
    transport: str, gateway_server: GatewayProcess, gateway_config_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    """One SDK client per transport; no SDK retries, so each test sees the gateway's own answer."""
    if transport == "http":
        client = Client(base_url=gateway_server.url, max_retries=0)
    else:
        config = load_config(gateway_config_path)
        config.storage.url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('embedded') / 'embedded.db'}"
        client = Client.embedded(config=config, max_retries=0)
    try:
        yield client
    finally:
        client.close()
