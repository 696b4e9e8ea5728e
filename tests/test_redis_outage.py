"""A gateway whose Redis is out of reach answers limited requests with a typed, retryable 503
(``redis_unavailable``), never a bare 500, and says so on ``/readyz``."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from runyard.config import hash_api_key
from support.gateway import GatewayProcess

KEY = "ry_outage"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_requests_get_a_503_while_redis_is_unreachable(tmp_path: Path) -> None:
    config = tmp_path / "runyard.toml"
    config.write_text(f"""
[server]
api_keys = ["{hash_api_key(KEY)}"]

[storage]
url = "sqlite+aiosqlite:///{tmp_path / "runyard.db"}"

[limits]
rpm_sync = 1000

[redis]
url = "redis://127.0.0.1:{_closed_port()}/0"
prefix = "runyard-outage:"

[models.echo]
routes = ["dummy::echo"]
""")
    gateway = GatewayProcess(config, args=["--no-worker"]).start(timeout=60)
    try:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
            body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
            for path in ("/v1/chat/completions", "/v1/ai/chat"):
                r = client.post(path, json=body)
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "redis_unavailable", r.text
            ready = client.get("/readyz")
            assert ready.status_code == 503
    finally:
        gateway.stop()
