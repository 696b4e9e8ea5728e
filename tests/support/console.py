"""Console fixtures: a real ``runyard serve`` with API keys, the mock upstream, the test apps
and workflows; admin and workspace SDK clients; and headless Chromium through Playwright
(Debian's ``/usr/bin/chromium``: nothing downloads a browser)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard import Client
from runyard.config import hash_api_key
from support.gateway import GatewayProcess
from support.openai_mock import MockOpenAI
from support.tasks_e2e import app_env

ADMIN_KEY = "ry_console-admin-key"
CHROMIUM = os.environ.get("RUNYARD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def console_toml(root: Path, openai_url: str, *, keys: bool = True, host: str = "127.0.0.1") -> str:
    server = f'api_keys = ["{hash_api_key(ADMIN_KEY)}"]\napi_key_refresh_s = 0.2\n' if keys else ""
    return f"""
[server]
host = "{host}"
{server}
[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"
flush_interval_ms = 20

[files]
dir = "{root / "files"}"

[apps]
modules = ["apps.demo", "apps.flows"]

[workers]
concurrency = 4
poll_interval_s = 0.1
cancel_grace_s = 0.3

[providers.mock]
kind = "openai"
base_url = "{openai_url}"
timeout = 5.0

[providers.backup]
kind = "openai"
base_url = "{openai_url}"
timeout = 5.0

[models.gpt]
routes = ["mock::gpt-test"]
price = {{input = 1.0, output = 2.0}}

[models.gpt-fallback]
routes = ["mock::gpt-primary", "backup::gpt-secondary"]
price = {{input = 3.0, output = 6.0}}

[metrics.thumbs_up]
type = "boolean"
level = "inference"
"""


def start_console_server(root: Path, openai_url: str, **kwargs: Any) -> GatewayProcess:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "runyard.toml"
    path.write_text(console_toml(root, openai_url, **kwargs))
    return GatewayProcess(path, env=app_env()).start()


@pytest.fixture(scope="module")
def console_server(
    tmp_path_factory: pytest.TempPathFactory, _mock_openai_server: MockOpenAI
) -> Iterator[GatewayProcess]:
    server = start_console_server(tmp_path_factory.mktemp("console"), _mock_openai_server.url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def admin(console_server: GatewayProcess) -> Iterator[Client]:
    with Client(base_url=console_server.url, api_key=ADMIN_KEY, max_retries=0) as client:
        yield client


def create_key(server: GatewayProcess, name: str, workspace: str) -> dict[str, Any]:
    """A store key made over ``POST /v1/keys`` (the admin API); its JSON, secret included."""
    response = httpx.post(
        server.url + "/v1/keys",
        json={"name": name, "workspace": workspace},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; no browser download needed)"
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def screenshots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests put their screenshots ($RUNYARD_SCREENSHOTS, else a tmp dir)."""
    folder = Path(os.environ.get("RUNYARD_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"console screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = browser_missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run under CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; every dialog is recorded and accepted."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.dialogs = []

    def on_dialog(dialog: Any) -> None:
        page.dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def sign_in(page: Any, server: GatewayProcess, key: str) -> None:
    page.goto(server.url + "/ui/")
    assert page.url.endswith("/ui/signin")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/ui/")
