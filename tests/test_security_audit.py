"""The audit log: admin actions recorded with who and when, readable by admins only
(``GET /v1/audit``, ``runyard audit``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runyard.config import hash_api_key
from support.gateway import GatewayProcess

ADMIN = "ry_audit_admin"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runyard", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path, str, str]]:
    root = tmp_path_factory.mktemp("audit")
    path = root / "runyard.toml"
    path.write_text(f"""
[server]
api_keys = ["{hash_api_key(ADMIN)}"]

[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"
""")
    made = _cli("keys", "create", "--name", "team-a", "--workspace", "a", "--rpm-sync", "5", "--config", str(path))
    assert made.returncode == 0, made.stderr
    key_id = made.stdout.split()[2]
    member_key = made.stdout.strip().splitlines()[-1]
    gone = _cli("keys", "create", "--name", "temp", "--config", str(path))
    gone_id = gone.stdout.split()[2]
    assert _cli("keys", "revoke", gone_id, "--config", str(path)).returncode == 0
    server = GatewayProcess(path).start()
    try:
        yield server, path, key_id, member_key
    finally:
        server.stop()


def test_key_actions_are_recorded_with_who_and_when(setup: tuple[GatewayProcess, Path, str, str]) -> None:
    server, _, key_id, member_key = setup
    resp = httpx.get(f"{server.url}/v1/audit", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 200, resp.text
    entries = resp.json()["data"]
    assert [e["action"] for e in entries] == ["key.revoked", "key.created", "key.created"]  # newest first
    created = entries[2]
    assert created["target"] == key_id and created["actor"].startswith("cli")
    assert created["details"] == {"name": "team-a", "workspace": "a", "limits": {"rpm_sync": 5}}
    assert created["at"].endswith("+00:00")
    assert member_key not in resp.text and hash_api_key(member_key) not in resp.text  # no secret recorded
    only = httpx.get(f"{server.url}/v1/audit?action=key.revoked&limit=5", headers={"Authorization": f"Bearer {ADMIN}"})
    assert [e["action"] for e in only.json()["data"]] == ["key.revoked"]


def test_only_admins_read_the_audit_log(setup: tuple[GatewayProcess, Path, str, str]) -> None:
    server, _, _, member_key = setup
    assert httpx.get(f"{server.url}/v1/audit").status_code == 401
    member = httpx.get(f"{server.url}/v1/audit", headers={"Authorization": f"Bearer {member_key}"})
    assert member.status_code == 403 and member.json()["error"]["code"] == "admin_only"
    bad = httpx.get(f"{server.url}/v1/audit?limit=0", headers={"Authorization": f"Bearer {ADMIN}"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"


def test_audit_cli(setup: tuple[GatewayProcess, Path, str, str]) -> None:
    _, path, key_id, _ = setup
    out = _cli("audit", "--json", "--config", str(path))
    assert out.returncode == 0, out.stderr
    entries = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["action"] for e in entries][-1] == "key.created" and entries[-1]["target"] == key_id
    text = _cli("audit", "--action", "key.revoked", "--config", str(path))
    assert "key.revoked" in text.stdout and "key.created" not in text.stdout
