"""The audit trail over a real ``runyard serve``: workflow publishes and alias moves, agent
template versions, approvals (the native route and inference.sh's approve / reject) and keys
created / revoked through ``/v1/keys`` each appear in ``GET /v1/audit`` with who and when."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from runyard.workflows import Workflow
from support.gateway import GatewayProcess
from test_limits import ADMIN_KEY, add_key, config_toml

Setup = tuple[httpx.Client, httpx.Client, str]  # (key A in teama, the admin, A's key id)
PAY = {"name": "pay", "require_approval": True, "parameters": {"type": "object", "properties": {}}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("audit-trail")
    path = root / "runyard.toml"
    path.write_text(config_toml(root / "runyard.db"))
    key_id, secret = add_key(path, "a", workspace="teama")
    process = GatewayProcess(path).start()
    a = httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {secret}"}, timeout=15)
    admin = httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=15)
    try:
        yield a, admin, key_id
    finally:
        a.close()
        admin.close()
        process.stop()


def entries(admin: httpx.Client, action: str) -> list[dict[str, Any]]:
    response = admin.get("/v1/audit", params={"action": action})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def assert_recent(entry: dict[str, Any]) -> None:
    at = datetime.fromisoformat(entry["at"])
    assert timedelta(0) <= datetime.now(timezone.utc) - at < timedelta(minutes=2), entry


def test_workflow_publish_and_alias_moves_are_recorded(setup: Setup) -> None:
    a, admin, key_id = setup
    flow = Workflow("teama/flow").input(text="string").output(x="{{ start.text }}").to_dict()
    assert a.post("/v1/workflows", json=flow).status_code == 201
    assert a.post("/v1/workflows/teama/flow/publish", json={}).status_code == 201
    assert a.post("/v1/workflows/teama/flow/publish", json={"alias": None}).status_code == 201
    assert a.put("/v1/workflows/teama/flow/aliases/main", json={"version": 2}).status_code == 200
    published = [e for e in entries(admin, "workflow.published") if e["target"] == "teama/flow"]
    assert [e["details"]["version"] for e in published] == [2, 1]  # newest first
    assert {(e["actor"], e["workspace"]) for e in published} == {(f"key:{key_id}", "teama")}
    moved = entries(admin, "workflow.alias_moved")
    assert moved[0]["target"] == "teama/flow" and moved[0]["details"] == {"alias": "main", "version": 2}
    assert moved[0]["actor"] == f"key:{key_id}"
    assert_recent(moved[0])
    assert a.put("/v1/workflows/teama/flow/aliases/main", json={"version": 9}).status_code == 404
    assert len(entries(admin, "workflow.alias_moved")) == 1  # a refused move is not recorded


def test_agent_template_creation_is_recorded(setup: Setup) -> None:
    a, admin, key_id = setup
    made = a.post("/v1/agents", json={"name": "teama/bot", "config": {"model": "dummy::echo"}})
    assert made.status_code == 201
    entry = entries(admin, "agent.published")[0]
    assert (entry["target"], entry["actor"], entry["workspace"]) == ("teama/bot@1", f"key:{key_id}", "teama")
    assert_recent(entry)


def _awaiting(a: httpx.Client) -> tuple[str, dict[str, Any]]:
    """A chat whose model called the approval-gated client tool ``pay``: (chat id, the call)."""
    chat = a.post("/v1/chats", json={"agent": {"model": "dummy::tool", "tools": [PAY]}}).json()
    paused = a.post(f"/v1/chats/{chat['id']}/messages", json={"text": "pay 5"}).json()
    assert paused["status"] == "awaiting_approval", paused
    return chat["id"], paused["tool_calls"][-1]


def test_approvals_are_recorded_native_and_inferencesh(setup: Setup) -> None:
    a, admin, key_id = setup
    chat_id, call = _awaiting(a)
    body = {"call_id": call["id"], "approved": True, "by": "alice"}
    assert a.post(f"/v1/chats/{chat_id}/approvals", json=body).status_code == 200
    native = entries(admin, "approval.given")[0]
    assert native["actor"] == f"key:{key_id}" and native["target"] == "pay"
    assert native["details"]["chat_id"] == chat_id and native["details"]["approved"] is True
    assert native["details"]["by"] == "alice"
    assert_recent(native)

    for verb, approved in (("invoke", True), ("reject", False)):
        chat_id, call = _awaiting(a)
        inv = f"{chat_id}~{call['step']}~{call['id']}"
        answer = a.post(f"/inferencesh/tools/{inv}/{verb}", json={"reason": "no"} if not approved else {})
        assert answer.status_code == 200, answer.text
        entry = entries(admin, "approval.given")[0]
        assert entry["details"]["chat_id"] == chat_id and entry["details"]["approved"] is approved
        assert entry["actor"] == f"key:{key_id}"
    assert len(entries(admin, "approval.given")) == 3


def test_keys_created_and_revoked_over_http_are_recorded(setup: Setup) -> None:
    _, admin, _ = setup
    created = admin.post("/v1/keys", json={"name": "ci", "workspace": "teamc"})
    assert created.status_code == 201
    new_id, secret = created.json()["id"], created.json()["key"]
    assert admin.delete(f"/v1/keys/{new_id}").status_code == 200
    made, revoked = entries(admin, "key.created")[0], entries(admin, "key.revoked")[0]
    for entry in (made, revoked):
        assert entry["target"] == new_id and entry["workspace"] == "teamc"
        assert entry["actor"].startswith("key:") and entry["details"] == {"name": "ci"}
        assert secret not in str(entry)  # never the secret
        assert_recent(entry)
