"""Fixtures for apps & tasks end to end: a gateway config with the test apps (``tests/apps``),
a real ``runyard serve`` (with its in-process worker), an embedded client, a webhook receiver
and ``runyard worker`` subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from runyard import Client
from runyard.config import load_config
from support.gateway import GatewayProcess
from support.loopback import LoopbackServer

TESTS_DIR = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "whsec-test-secret"


def app_env() -> dict[str, str]:
    """Environment for subprocesses: ``tests/`` on the path so ``apps.demo`` imports."""
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def tasks_toml(root: Path, *, lease_s: float = 2.0, max_attempts: int = 3, allow_private: bool = True) -> str:
    return f"""
[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"
flush_interval_ms = 20

[files]
dir = "{root / "files"}"

[apps]
modules = ["apps.demo"]

[apps.aliases."tests/echo"]
main = "1.0.0"
stale = "9.9.9"

[apps.secrets]
PRESENT_TOKEN = "s3cret"

[workers]
concurrency = 8
lease_s = {lease_s}
max_attempts = {max_attempts}
poll_interval_s = 0.1
cancel_grace_s = 0.3
session_sweep_s = 0.2

[pools.solo]
concurrency = 1

[webhooks]
secret = "{WEBHOOK_SECRET}"
allow_private_webhooks = {"true" if allow_private else "false"}
max_attempts = 3
initial_backoff_s = 0.1
timeout_s = 2
"""


@pytest.fixture(scope="session")
def tasks_config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    path = root / "runyard.toml"
    path.write_text(tasks_toml(root))
    return path


@pytest.fixture(scope="session")
def tasks_server(tasks_config_path: Path) -> Iterator[GatewayProcess]:
    server = GatewayProcess(tasks_config_path, env=app_env()).start()
    try:
        yield server
    finally:
        server.stop()


def embedded_client(config_path: Path, root: Path, **overrides: Any) -> Client:
    config = load_config(config_path)
    config.storage.url = f"sqlite+aiosqlite:///{root / 'embedded.db'}"
    config.files.dir = str(root / "files")
    for section, values in overrides.items():
        for key, value in values.items():
            setattr(getattr(config, section), key, value)
    return Client.embedded(config=config, max_retries=0)


@pytest.fixture(scope="session", params=["http", "embedded"])
def tasks_client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tasks_config_path: Path
) -> Iterator[Client]:
    """One client per transport over the same test apps; no SDK retries."""
    if request.param == "http":
        server: GatewayProcess = request.getfixturevalue("tasks_server")
        client = Client(base_url=server.url, max_retries=0)
    else:
        client = embedded_client(tasks_config_path, tmp_path_factory.mktemp("tasks-embedded"))
    try:
        yield client
    finally:
        client.close()


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 recording POSTs; ``fail_first`` answers 500 that many times."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_first = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    failing = receiver.fail_first > 0
                    if failing:
                        receiver.fail_first -= 1
                self.send_response(500 if failing else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = LoopbackServer(Handler)
        self.url = self.server.url

    def start(self) -> WebhookReceiver:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} webhook requests, got {len(self.requests)}")


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


class WorkerProcess:
    """``python -m runyard worker --config FILE`` as a subprocess."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.log_path = config_path.with_name(f"worker-{time.monotonic_ns()}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runyard", "worker", "--config", str(self.config_path), "--log-level", "info"],
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **app_env()},
            cwd=self.config_path.parent,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
