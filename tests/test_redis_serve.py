"""``runyard serve`` as a replica: ``--workers N`` over Postgres + Redis, its refusal without
``[redis]``, and ``/readyz`` (store, migrations, Redis) beside ``/healthz`` (liveness)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support import scaleout_hook
from support.gateway import GatewayProcess, free_port, stored_inferences
from support.scaleout import redis_url


def _config(path: Path, storage_url: str, redis: str | None, prefix: str = "") -> Path:
    text = f'[storage]\nurl = "{storage_url}"\n'
    if redis is not None:
        text += f'[redis]\nurl = "{redis}"\nprefix = "{prefix}"\n'
    path.write_text(text)
    return path


def test_several_workers_without_redis_are_refused(tmp_path: Path) -> None:
    config = _config(tmp_path / "runyard.toml", f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", None)
    command = ["serve", "--config", str(config), "--port", str(free_port()), "--workers", "3"]
    # (without the scale-out test run's settings, which would give this config a [redis] table)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_TEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "runyard", *command],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--workers 3" in proc.stderr and "[redis]" in proc.stderr


def test_workers_share_one_port_and_report_ready(tmp_path: Path, postgres_url: str, redis_prefix: str) -> None:
    config = _config(tmp_path / "runyard.toml", postgres_url, redis_url(), redis_prefix)
    server = GatewayProcess(config, args=["--workers", "2", "--no-worker"]).start(timeout=60)
    try:
        ready = httpx.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {"store": "ok", "migrations": "ok", "redis": "ok"}}
        assert server._proc is not None
        children = Path(f"/proc/{server._proc.pid}/task/{server._proc.pid}/children").read_text().split()
        assert len(children) >= 2  # uvicorn's supervisor and its two gateway processes
        if not scaleout_hook.enabled():  # (the scale-out run's hook imports SQLAlchemy everywhere)
            # the supervisor only watches its processes: no store code mapped in (SQLAlchemy's
            # compiled modules), which was 22 MB of its RSS
            assert "/sqlalchemy/" not in Path(f"/proc/{server._proc.pid}/maps").read_text()
            assert any("/sqlalchemy/" in Path(f"/proc/{pid}/maps").read_text() for pid in children)
        port = int(server.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 60  # /readyz answered from one process; the other may still start
        while True:
            listening = {pid: _listening_inodes(int(pid), port) for pid in children}
            sockets = [inodes for inodes in listening.values() if inodes]
            if len(sockets) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(sockets) == 2 and not sockets[0] & sockets[1], listening  # one socket each (SO_REUSEPORT)
        for _ in range(20):
            answer = httpx.post(
                server.url + "/v1/chat/completions",
                json={"model": "dummy::echo", "messages": [{"role": "user", "content": "hi"}]},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
    finally:
        server.stop()


def _listening_inodes(pid: int, port: int) -> set[str]:
    """The inodes of the TCP sockets listening on ``port`` that process ``pid`` holds."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(target[8:-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                listening.add(fields[9])
    return held & listening


def test_readyz_names_what_is_down(tmp_path: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    config = _config(tmp_path / "runyard.toml", f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", dead_redis, "x:")
    server = GatewayProcess(config).start()
    try:
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200  # alive
        ready = httpx.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        body = ready.json()
        assert body["code"] == "not_ready" and body["status"] == "not_ready"
        assert body["checks"]["store"] == "ok" and body["checks"]["migrations"] == "ok"
        assert body["checks"]["redis"].startswith("unreachable")
    finally:
        server.stop()


def test_each_worker_process_logs_as_serve_was_told(tmp_path: Path, postgres_url: str, redis_prefix: str) -> None:
    """``--log-format json --access-log`` and the redaction of configured secrets hold in every
    gateway process of ``--workers 2``, not only in the supervisor that parsed the flags."""
    secret = "sk-upstream-" + redis_prefix.strip(":").replace(":", "-")
    config = _config(tmp_path / "runyard.toml", postgres_url, redis_url(), redis_prefix)
    provider = '[providers.up]\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "UP_PROVIDER_KEY"\n'
    config.write_text(config.read_text() + provider)
    args = ["--workers", "2", "--no-worker", "--log-format", "json", "--access-log", "--log-level", "info"]
    server = GatewayProcess(config, env={"UP_PROVIDER_KEY": secret}, args=args).start(timeout=60)
    ids = [f"worker-log-{i}" for i in range(24)]
    try:
        for request_id in ids:
            answer = httpx.post(
                server.url + "/v1/chat/completions",
                json={"model": "dummy::echo", "messages": [{"role": "user", "content": f"{secret} hi"}]},
                headers={"X-Request-Id": request_id},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
    finally:
        server.stop()
    lines = server.log_path.read_text().splitlines()
    access = [json.loads(line) for line in lines if line.startswith("{") and '"runyard.access"' in line]
    assert {line["request_id"] for line in access} >= set(ids)  # every request, whichever process served it
    assert secret not in server.log_path.read_text()


def test_a_sigterm_drains_every_gateway_process_recorder(tmp_path: Path, postgres_url: str, redis_prefix: str) -> None:
    """``--workers 2``: a SIGTERM to the supervisor reaches each gateway process, and each writes
    the rows it buffered before exiting (the writer would otherwise wait 10 minutes)."""
    config = _config(tmp_path / "runyard.toml", postgres_url, redis_url(), redis_prefix)
    config.write_text(config.read_text().replace("[redis]", "flush_interval_ms = 600000\nbatch_size = 1000\n[redis]"))
    server = GatewayProcess(config, args=["--workers", "2", "--no-worker"]).start(timeout=60)
    try:
        for _ in range(40):  # a connection each: the kernel spreads them over both processes
            answer = httpx.post(
                server.url + "/v1/chat/completions",
                json={"model": "dummy::echo", "messages": [{"role": "user", "content": "hi"}]},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
        assert stored_inferences(postgres_url) == 0  # all buffered
    finally:
        server.stop()  # SIGTERM to the supervisor
    assert stored_inferences(postgres_url) == 40
