"""A gateway whose Redis is out of reach answers limited requests with a typed, retryable 503
(``redis_unavailable``), never a bare 500, and says so on ``/readyz``."""

from __future__ import annotations

from pathlib import Path

import httpx

from support.gateway import GatewayProcess, free_port, keyed_config

KEY = "ry_outage"


def test_requests_get_a_503_while_redis_is_unreachable(tmp_path: Path) -> None:
    config = keyed_config(
        tmp_path,
        KEY,
        limits={"rpm_sync": 1000},
        redis={"url": f"redis://127.0.0.1:{free_port()}/0", "prefix": "runyard-outage:"},  # nothing listens
        models={"echo": {"routes": ["dummy::echo"]}},
    )
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
