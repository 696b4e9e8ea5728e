"""What the Sim (``simstudio-sdk``) tests share: a real ``runyard serve`` with the test apps, an
admin key and a mock OpenAI upstream (:func:`sim_gateway`), and API keys with limits added to its
store while it runs (:func:`add_key`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runyard.backends.store import Store
from runyard.config import hash_api_key, load_config
from support.gateway import GatewayProcess
from support.tasks_e2e import app_env


@contextmanager
def sim_gateway(
    root: Path, admin_key: str, upstream_url: str, *, window_s: float, concurrency: int
) -> Iterator[GatewayProcess]:
    """The gateway (admin key ``admin_key``, model ``gpt`` on ``upstream_url``, rate windows of
    ``window_s``, ``concurrency`` workers), stopped after."""
    path = root / "runyard.toml"
    path.write_text(f"""
[server]
api_keys = ["{hash_api_key(admin_key)}"]
api_key_refresh_s = 0.2

[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"

[apps]
modules = ["apps.flows"]

[providers.mock]
kind = "openai"
base_url = "{upstream_url}"

[models.gpt]
routes = ["mock::gpt-test"]

[limits]
window_s = {window_s}

[workers]
concurrency = {concurrency}
poll_interval_s = 0.1
""")
    gateway = GatewayProcess(path, env=app_env()).start()
    try:
        yield gateway
    finally:
        gateway.stop()


def add_key(server: GatewayProcess, **limits: Any) -> str:
    """A new API key with ``limits`` (columns of the key), once the server has picked it up."""
    cfg = load_config(server.config_path)
    secret = f"ry_sim_{time.monotonic_ns()}"

    async def create() -> None:
        store = Store(cfg.storage.url)
        try:
            await store.start()
            await store.add_api_key("sim", hash_api_key(secret), **limits)
        finally:
            await store.aclose()

    asyncio.run(create())
    time.sleep(0.5)  # the server refreshes its keys every 0.2 s
    return secret
