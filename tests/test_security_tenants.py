"""Finding 1: workflow and agent-template namespaces belong to the workspace that first created
them, over a real ``runyard serve``.

Keys A and C are in workspace ``teama``, B in ``teamb``; ``admin`` is the config key. A owns
``teama/*``; B can neither overwrite nor publish, alias, validate, run, read or list them (the
same 404 as an unknown name; a save into the namespace is 403 ``namespace_taken``). C and the
admin can. The operator's definitions (saved by the admin key) are global and read-only to store
keys; ``[server] shared_namespaces`` opens a workspace's namespace to everyone, read-only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.workflows import Workflow
from support.gateway import GatewayProcess
from test_limits import ADMIN_KEY, add_key, config_toml

Callers = dict[str, httpx.Client]


def flow(name: str, label: str) -> dict[str, Any]:
    """A workflow that answers ``<label>: <text>`` (so a run shows whose version ran)."""
    return Workflow(name).input(text="string").output(said=f"{label}: {{{{ start.text }}}}").to_dict()


def bot(name: str, prompt: str) -> dict[str, Any]:
    return {"name": name, "config": {"model": "dummy::echo", "system_prompt": prompt}}


@pytest.fixture(scope="module")
def callers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callers]:
    root = tmp_path_factory.mktemp("tenants")
    path = root / "runyard.toml"
    path.write_text(config_toml(root / "runyard.db").replace("[server]\n", '[server]\nshared_namespaces = ["pub"]\n'))
    keys = {n: add_key(path, n, workspace=ws)[1] for n, ws in (("a", "teama"), ("c", "teama"), ("b", "teamb"))}
    keys["admin"] = ADMIN_KEY
    process = GatewayProcess(path).start()
    clients = {
        name: httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {key}"}, timeout=15)
        for name, key in keys.items()
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()
        process.stop()


def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def _saved(client: httpx.Client, name: str, label: str) -> None:
    assert client.post("/v1/workflows", json={"definition": flow(name, label)}).status_code == 201
    assert client.post(f"/v1/workflows/{name}/publish", json={}).status_code == 201


def _said(client: httpx.Client, name: str) -> str:
    run = client.post(f"/v1/workflows/{name}/execute", json={"input": {"text": "hi"}})
    assert run.status_code == 200, run.text
    return str(run.json()["output"]["said"])


def test_the_reproduction_workflows(callers: Callers) -> None:
    """B can no longer publish its own ``teama/wf`` and have A run it."""
    a, b = callers["a"], callers["b"]
    _saved(a, "teama/wf", "A")
    taken = b.post("/v1/workflows", json={"definition": flow("teama/wf", "B")})
    assert _error(taken) == (403, "namespace_taken")
    assert _error(b.post("/v1/workflows", json={"definition": flow("teama/other", "B")})) == (403, "namespace_taken")
    assert _error(b.post("/v1/workflows/teama/wf/publish", json={})) == (404, "workflow_not_found")
    assert _said(a, "teama/wf") == "A: hi"  # still A's own version
    assert [v["version"] for v in a.get("/v1/workflows/teama/wf").json()["versions"]] == [1]


def _workflow_calls(name: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", f"/v1/workflows/{name}", None),
        ("GET", f"/v1/workflows/{name}/status", None),
        ("POST", f"/v1/workflows/{name}/publish", {}),
        ("PUT", f"/v1/workflows/{name}/aliases/main", {"version": 1}),
        ("POST", f"/v1/workflows/{name}/aliases/beta", {"version": 1}),
        ("POST", f"/v1/workflows/{name}/validate", None),
        ("POST", f"/v1/workflows/{name}/execute", {"input": {"text": "x"}}),
        ("POST", f"/v1/workflows/{name}/execute", {"input": {"text": "x"}, "async": True}),
        ("GET", f"/api/workflows/{name}/status", None),  # Sim
        ("POST", f"/api/v2/workflows/{name}/execute", {"text": "x"}),  # Sim
        ("POST", "/v1/runs", {"app": name, "input": {"text": "x"}}),  # a workflow ref as an app
    ]


def _code(body: dict[str, Any]) -> Any:
    """The error code in Runyard's shape, or in Sim's legacy one (``{"error": "...", "code": ...}``)."""
    error = body["error"]
    return error["code"] if isinstance(error, dict) else body["code"]


def test_another_workspace_gets_the_unknown_name_answer(callers: Callers) -> None:
    a, b = callers["a"], callers["b"]
    _saved(a, "teama/hidden", "A")
    for (method, path, body), (_, unknown_path, _) in zip(
        _workflow_calls("teama/hidden"), _workflow_calls("nosuch/flow"), strict=True
    ):
        hidden = b.request(method, path, json=body)
        unknown = b.request(method, unknown_path, json=body)
        assert hidden.status_code == unknown.status_code == 404, (path, hidden.text, unknown.text)
        assert _code(hidden.json()) == _code(unknown.json()), path
    listed = {w["name"] for w in b.get("/v1/workflows").json()["data"]}
    assert "teama/hidden" not in listed and "teama/wf" not in listed
    assert "teama/hidden" in {w["name"] for w in a.get("/v1/workflows").json()["data"]}


def test_the_owner_workspace_and_the_admin_still_can(callers: Callers) -> None:
    a, c, admin = callers["a"], callers["c"], callers["admin"]
    _saved(a, "teama/shared-team", "A")
    for client in (c, admin):
        for method, path, body in _workflow_calls("teama/shared-team"):
            response = client.request(method, path, json=body)
            assert response.status_code in (200, 201, 202), (path, response.text)
        assert "teama/shared-team" in {w["name"] for w in client.get("/v1/workflows").json()["data"]}
    assert c.post("/v1/workflows", json={"definition": flow("teama/by-c", "C")}).status_code == 201
    saved = admin.post("/v1/workflows", json={"definition": flow("teama/by-admin", "ADMIN")})
    assert saved.status_code == 201  # the admin writes anywhere; the row stays teama's
    assert "teama/by-admin" not in {w["name"] for w in callers["b"].get("/v1/workflows").json()["data"]}
    assert a.post("/v1/workflows/teama/by-admin/publish", json={}).status_code == 201


def test_operator_and_shared_namespaces_are_read_only_to_other_workspaces(callers: Callers) -> None:
    a, b, admin = callers["a"], callers["b"], callers["admin"]
    _saved(admin, "ops/flow", "OPS")  # the operator's: global
    assert _said(b, "ops/flow") == "OPS: hi"
    assert _error(b.post("/v1/workflows/ops/flow/publish", json={})) == (403, "namespace_read_only")
    assert _error(b.put("/v1/workflows/ops/flow/aliases/main", json={"version": 1})) == (403, "namespace_read_only")
    assert _error(b.post("/v1/workflows", json={"definition": flow("ops/flow", "B")})) == (403, "namespace_taken")
    _saved(a, "pub/flow", "PUB")  # shared by the config
    assert _said(b, "pub/flow") == "PUB: hi"
    assert "pub/flow" in {w["name"] for w in b.get("/v1/workflows").json()["data"]}
    assert _error(b.post("/v1/workflows/pub/flow/publish", json={})) == (403, "namespace_read_only")
    assert _error(b.post("/v1/workflows", json={"definition": flow("pub/mine", "B")})) == (403, "namespace_taken")


def test_the_reproduction_agents(callers: Callers) -> None:
    a, b, c, admin = callers["a"], callers["b"], callers["c"], callers["admin"]
    assert a.post("/v1/agents", json=bot("teamA/bot", "A's")).json()["id"] == "teamA/bot@1"
    assert _error(b.post("/v1/agents", json=bot("teamA/bot", "B's"))) == (403, "namespace_taken")
    assert _error(b.post("/v1/agents", json=bot("teamA/other", "B's"))) == (403, "namespace_taken")
    assert a.get("/v1/agents/teamA/bot").json()["config"]["system_prompt"] == "A's"
    for template in ("teamA/bot", "nosuch/bot"):  # hidden and unknown answer alike
        assert _error(b.get(f"/v1/agents/{template}")) == (404, "agent_not_found")
        assert b.get(f"/v1/agents/{template}/versions").json()["data"] == []
        assert _error(b.post(f"/v1/agents/{template}/chats", json={})) == (404, "agent_not_found")
        assert _error(b.post("/v1/chats", json={"agent": template})) == (404, "agent_not_found")
        ish = b.post("/inferencesh/agents/run", json={"agent": template, "input": {"text": "hi"}})
        assert ish.status_code == 404 and "agent_not_found" in ish.text
    for client in (c, admin):
        assert client.get("/v1/agents/teamA/bot@1").status_code == 200
        assert len(client.get("/v1/agents/teamA/bot/versions").json()["data"]) >= 1
        assert client.post("/v1/agents/teamA/bot/chats", json={}).status_code == 201
    assert c.post("/v1/agents", json=bot("teamA/bot", "C's")).json()["id"] == "teamA/bot@2"
    assert admin.post("/v1/agents", json=bot("teamA/bot", "admin's")).json()["id"] == "teamA/bot@3"
    assert _error(b.get("/v1/agents/teamA/bot@3")) == (404, "agent_not_found")
    for template in ("teamA/bot", "nosuch/bot"):  # a workflow of B's naming it: the same "unknown agent"
        uses = Workflow("teamb/uses").agent("ask", template, message="hi").output(x="{{ ask }}").to_dict()
        assert b.post("/v1/workflows", json=uses).status_code == 201
        refused = b.post("/v1/workflows/teamb/uses/publish", json={})
        assert refused.status_code == 422, refused.text
        assert [p["code"] for p in refused.json()["error"]["details"]] == ["agent_not_found"]


def test_existing_rows_are_migrated_to_their_creators_workspace(tmp_path: Path) -> None:
    """Rows saved before the owner columns: the audit log's workspace for their namespace, else the operator's."""
    import asyncio

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import create_async_engine

    import runyard.backends.migrations as migrations

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"

    def upgrade(conn: sa.Connection, target: str) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)

    async def run() -> list[tuple[Any, ...]]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                for target in ("0006_workflows", "0007_agents", "0010_audit_log"):
                    await conn.run_sync(upgrade, target)
                now = "2026-01-01 00:00:00"
                for name in ("teama/old", "teama/old2", "lost/old"):
                    await conn.execute(
                        sa.text(
                            "INSERT INTO workflows (name, draft, draft_hash, created_at, updated_at) "
                            "VALUES (:n, '{}', 'h', :t, :t)"
                        ),
                        {"n": name, "t": now},
                    )
                await conn.execute(
                    sa.text(
                        "INSERT INTO agent_templates (name, version, config, created_at) "
                        "VALUES ('teama/bot', 1, '{}', :t)"
                    ),
                    {"t": now},
                )
                await conn.execute(
                    sa.text(
                        "INSERT INTO audit_log (id, at, actor, action, target, workspace) VALUES "
                        "('1', :t, 'key:k1', 'workflow.published', 'teama/old', 'teama'),"
                        "('2', :t, 'key:k1', 'agent.published', 'teama/bot@1', 'teama')"
                    ),
                    {"t": now},
                )
                await conn.run_sync(upgrade, "heads")
                flows = (await conn.execute(sa.text("SELECT name, workspace, created_by FROM workflows"))).all()
                bots = (await conn.execute(sa.text("SELECT name, workspace, created_by FROM agent_templates"))).all()
            return sorted(tuple(r) for r in [*flows, *bots])
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == [
        ("lost/old", None, None),  # creator unknown: the operator's (global, admin-written)
        ("teama/bot", "teama", "k1"),
        ("teama/old", "teama", "k1"),
        ("teama/old2", "teama", "k1"),  # the namespace's owner
    ]


def test_the_console_applies_the_same_rule(callers: Callers) -> None:
    """B's console session neither lists nor opens ``teama``'s workflows and agents, nor moves their aliases."""
    from types import SimpleNamespace

    from test_console_security import csrf_of, signed_in

    a, b = callers["a"], callers["b"]
    _saved(a, "teama/console", "A")
    assert a.post("/v1/agents", json=bot("teamA/console-bot", "A's")).status_code == 201
    server = SimpleNamespace(url=str(b.base_url))
    with signed_in(server, b.headers["Authorization"].removeprefix("Bearer ")) as console:  # type: ignore[arg-type]
        assert "teama/console" not in console.get("/ui/workflows").text
        assert console.get("/ui/workflow", params={"name": "teama/console"}).status_code == 404
        assert "teamA/console-bot" not in console.get("/ui/agents").text
        assert console.get("/ui/agents/teamA/console-bot").status_code == 404
        token = csrf_of(console.get("/ui/workflows").text)
        form = {"csrf": token, "name": "teama/console", "alias": "main", "version": "1", "confirm": "yes"}
        assert console.post("/ui/workflow/alias", data=form).status_code == 404
    server = SimpleNamespace(url=str(a.base_url))
    with signed_in(server, a.headers["Authorization"].removeprefix("Bearer ")) as console:  # type: ignore[arg-type]
        assert "teama/console" in console.get("/ui/workflows").text
        assert "teamA/console-bot" in console.get("/ui/agents").text
