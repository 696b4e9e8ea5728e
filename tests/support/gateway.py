"""A real ``runyard serve`` subprocess on 127.0.0.1 for end-to-end tests, and :func:`client_for`,
an SDK client on a config embedded or over HTTP against such a process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import tomli_w

from runyard.client import AsyncClient
from runyard.config import parse_config


def keyed_config(tmp_path: Path, key: str, **sections: Any) -> Path:
    """``tmp_path/runyard.toml``: one API key (``key``), a SQLite store in ``tmp_path``, and the
    other ``sections`` (``limits={...}``, ``redis={...}``, ``models={...}``) as given."""
    from runyard.config import hash_api_key

    data = {
        "server": {"api_keys": [hash_api_key(key)]},
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'runyard.db'}"},
        **sections,
    }
    path = tmp_path / "runyard.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GatewayProcess:
    """Starts ``python -m runyard serve --config FILE`` and waits until ``/healthz`` answers."""

    def __init__(self, config_path: Path, env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.config_path = config_path
        self.args = list(args or [])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = config_path.with_suffix(".log")

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runyard",
                "serve",
                "--config",
                str(self.config_path),
                "--port",
                str(self.port),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env,
            cwd=self.config_path.parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"runyard serve exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"runyard serve did not become ready:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None


@asynccontextmanager
async def client_for(
    mode: Literal["embedded", "http"], config: dict[str, Any], tmp_path: Path
) -> AsyncIterator[AsyncClient]:
    """An :class:`AsyncClient` on ``config``: ``embedded``, or over HTTP against a real ``runyard
    serve`` started on it (its TOML written to ``tmp_path``) and stopped after."""
    if mode == "embedded":
        async with AsyncClient.embedded(config=parse_config(config)) as client:
            yield client
        return
    path = tmp_path / "runyard.toml"
    path.write_text(tomli_w.dumps(config))
    server = await asyncio.to_thread(GatewayProcess(path).start)
    try:
        async with AsyncClient(base_url=server.url) as client:
            yield client
    finally:
        await asyncio.to_thread(server.stop)


def stored_inferences(storage_url: str) -> int:
    """How many inference rows the store at ``storage_url`` holds (read by the test, not a gateway)."""
    from runyard.backends.store import Store

    async def count() -> int:
        store = Store(storage_url)
        try:
            return await store.count_inferences()
        finally:
            await store.aclose()

    return asyncio.run(count())
