"""Inference recording on Postgres through a real ``runyard serve``: ``async`` rows wait in the
buffer and a SIGTERM drains them; ``sync`` rows are in before the answer leaves."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from support.gateway import GatewayProcess, stored_inferences

CHAT = {"model": "dummy::echo", "messages": [{"role": "user", "content": "hi"}]}


def _serve(tmp_path: Path, url: str, recording: str) -> GatewayProcess:
    config = tmp_path / "runyard.toml"
    config.write_text(
        f'[storage]\nurl = "{url}"\nrecording = "{recording}"\nflush_interval_ms = 600000\nbatch_size = 1000\n'
    )
    return GatewayProcess(config).start(timeout=60)


def test_async_recording_drains_on_sigterm(tmp_path: Path, postgres_url: str) -> None:
    server = _serve(tmp_path, postgres_url, "async")
    try:
        for _ in range(5):
            assert httpx.post(server.url + "/v1/chat/completions", json=CHAT, timeout=10).status_code == 200
        assert stored_inferences(postgres_url) == 0  # buffered: the writer waits for 1,000 rows or 10 minutes
    finally:
        server.stop()  # SIGTERM: the shutdown writes what is buffered
    assert stored_inferences(postgres_url) == 5


def test_sync_recording_keeps_every_answered_id_through_sigkill(tmp_path: Path, postgres_url: str) -> None:
    """``recording = "sync"``: the writer would wait 10 minutes, yet each answer leaves only once
    its row is in, so a SIGKILL right after the answers loses none of the ids the client holds."""
    server = _serve(tmp_path, postgres_url, "sync")
    try:
        ids = []
        for _ in range(5):
            r = httpx.post(server.url + "/v1/chat/completions", json=CHAT, timeout=10)
            assert r.status_code == 200
            ids.append(r.headers.get("x-inference-id") or r.json()["id"])
    finally:
        proc = server._proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)  # no shutdown: nothing buffered could be drained
        proc.wait(timeout=10)
        server._proc = None
        server.stop()
    assert stored_inferences(postgres_url) == 5
    assert len(set(ids)) == 5
