"""Workspace isolation over a real ``runyard serve``: a store key sees only what keys of its own
workspace created (same 404 as an unknown id otherwise); the operator's config key sees all.

Keys A and C are in workspace ``acme``, B in ``other``. A creates a task, a file, an agent chat
and an inference; B can neither read nor cancel them, nor find them in listings, nor pull A's
file into its own run. C and the admin key see them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.workflows import Workflow
from support.gateway import GatewayProcess
from support.tasks_e2e import app_env
from test_limits import ADMIN_KEY, add_key, cli, config_toml

Setup = tuple[GatewayProcess, dict[str, str], Path]


class Caller:
    def __init__(self, url: str, key: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=15)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, **kwargs)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("isolation")
    path = root / "runyard.toml"
    path.write_text(config_toml(root / "runyard.db", '\n[apps]\nmodules = ["apps.wf_files"]\n'))
    keys = {name: add_key(path, name, workspace=ws)[1] for name, ws in (("a", "acme"), ("c", "acme"), ("b", "other"))}
    keys["admin"] = ADMIN_KEY
    process = GatewayProcess(path, env=app_env()).start()
    try:
        yield process, keys, path
    finally:
        process.stop()


@pytest.fixture(scope="module")
def callers(gw: Setup) -> dict[str, Caller]:
    process, keys, _ = gw
    return {name: Caller(process.url, key) for name, key in keys.items()}


@pytest.fixture(scope="module")
def owned(callers: dict[str, Caller]) -> dict[str, str]:
    """What key A created: a task, a file, a chat, an inference (their ids)."""
    a = callers["a"]
    run = {"app": "runyard/chat", "input": {"model": "dummy::echo", "messages": [{"role": "user", "content": "hi"}]}}
    task = a.post("/v1/runs", json=run)
    assert task.status_code == 201, task.text
    upload = a.post("/v1/files?filename=a.txt", content=b"acme secret", headers={"Content-Type": "text/plain"})
    assert upload.status_code == 201, upload.text
    chat = a.post("/v1/chats", json={"agent": {"model": "dummy::echo"}})
    assert chat.status_code == 201, chat.text
    inference = a.post("/v1/ai/chat", json={"model": "dummy::echo", "messages": [{"role": "user", "content": "x"}]})
    assert inference.status_code == 200, inference.text
    return {
        "task": task.json()["id"],
        "file": upload.json()["id"],
        "chat": chat.json()["id"],
        "inference": inference.json()["inference_id"],
    }


def reads(ids: dict[str, str]) -> list[tuple[str, str]]:
    """(path, the not-found code an unknown id gets) for each read by id."""
    return [
        (f"/v1/tasks/{ids['task']}", "task_not_found"),
        (f"/v1/tasks/{ids['task']}/events", "task_not_found"),
        (f"/v1/jobs/{ids['task']}", "task_not_found"),
        (f"/inferencesh/tasks/{ids['task']}", "task_not_found"),
        (f"/v1/files/{ids['file']}", "file_not_found"),
        (f"/v1/files/{ids['file']}/content", "file_not_found"),
        (f"/v1/chats/{ids['chat']}", "chat_not_found"),
        (f"/inferencesh/chats/{ids['chat']}", "chat_not_found"),
        (f"/v1/inferences/{ids['inference']}", "inference_not_found"),
    ]


def error_code(response: httpx.Response) -> str:
    body = response.json()
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    return str(error.get("code"))


def unknown(ids: dict[str, str]) -> dict[str, str]:
    """Well-formed ids of nothing, shaped like the real ones."""
    return {k: v[:-4] + ("0000" if not v.endswith("0000") else "1111") for k, v in ids.items()}


def test_another_workspace_gets_the_unknown_id_404(callers: dict[str, Caller], owned: dict[str, str]) -> None:
    b = callers["b"]
    for (path, code), (missing, _) in zip(reads(owned), reads(unknown(owned)), strict=True):
        hidden, absent = b.get(path), b.get(missing)
        assert hidden.status_code == 404, (path, hidden.status_code, hidden.text)
        assert absent.status_code == 404, (missing, absent.text)
        assert error_code(hidden) == error_code(absent) == code, (path, hidden.text, absent.text)


def test_another_workspace_cannot_act_on_them(callers: dict[str, Caller], owned: dict[str, str]) -> None:
    b = callers["b"]
    attempts = [
        (f"/v1/tasks/{owned['task']}/cancel", {}),
        (f"/inferencesh/tasks/{owned['task']}/cancel", {}),
        (f"/v1/chats/{owned['chat']}/messages", {"text": "hello"}),
        (f"/v1/chats/{owned['chat']}/reset", {}),
        ("/v1/feedback", {"metric_name": "comment", "value": "x", "inference_id": owned["inference"]}),
    ]
    for path, body in attempts:
        response = b.post(path, json=body)
        assert response.status_code == 404, (path, response.status_code, response.text)
    assert callers["a"].get(f"/v1/chats/{owned['chat']}").json()["messages"] == []


def test_listings_are_per_workspace(callers: dict[str, Caller], owned: dict[str, str]) -> None:
    def listed(name: str) -> set[str]:
        page = callers[name].get("/v1/tasks?limit=200")
        assert page.status_code == 200, page.text
        return {t["id"] for t in page.json()["data"]}

    assert owned["task"] not in listed("b")
    assert owned["task"] in listed("c") and owned["task"] in listed("admin") and owned["task"] in listed("a")


def test_same_workspace_and_admin_see_everything(callers: dict[str, Caller], owned: dict[str, str]) -> None:
    for name in ("a", "c", "admin"):
        for path, _ in reads(owned):
            if path.endswith("/events"):
                continue  # a stream: its 200 is checked below
            response = callers[name].get(path)
            assert response.status_code == 200, (name, path, response.status_code, response.text)
    assert callers["c"].get(f"/v1/files/{owned['file']}/content").content == b"acme secret"
    with callers["c"].http.stream("GET", f"/v1/tasks/{owned['task']}/events") as events:
        assert events.status_code == 200


def test_a_run_cannot_pull_in_another_workspaces_file(callers: dict[str, Caller], owned: dict[str, str]) -> None:
    ref = f"runyard://files/{owned['file']}"
    b, c = callers["b"], callers["c"]
    run = {"app": "runyard/chat-batch", "input": {"file": ref}}
    refused = b.post("/v1/runs", json=run)
    assert refused.status_code == 404 and error_code(refused) == "file_not_found", refused.text
    batch = b.post("/v1/ai/batch", json={"input_file": ref})
    assert batch.status_code == 404 and error_code(batch) == "file_not_found", batch.text
    chat = b.post("/v1/chats", json={"agent": {"model": "dummy::echo"}}).json()
    message = b.post(f"/v1/chats/{chat['id']}/messages", json={"text": "see", "files": [ref]})
    assert message.status_code == 404 and error_code(message) == "file_not_found", message.text
    assert c.post("/v1/runs", json=run).status_code == 201  # the same workspace may


def test_a_revoked_keys_resources_stay_in_its_workspace(gw: Setup, callers: dict[str, Caller]) -> None:
    """The owner's workspace is found in the store once its key is no longer active."""
    process, _, path = gw
    key_id, secret = add_key(path, "doomed", workspace="acme")
    doomed = Caller(process.url, secret)
    upload = doomed.post("/v1/files?filename=d.txt", content=b"d", headers={"Content-Type": "text/plain"})
    assert upload.status_code == 201, upload.text
    file_path = f"/v1/files/{upload.json()['id']}"
    assert cli("keys", "revoke", key_id, "--config", str(path)).returncode == 0
    deadline = time.monotonic() + 10
    while doomed.get(file_path).status_code != 401:
        assert time.monotonic() < deadline, "the revoked key is still accepted"
        time.sleep(0.1)
    assert callers["c"].get(file_path).status_code == 200
    assert callers["b"].get(file_path).status_code == 404
    assert callers["admin"].get(file_path).status_code == 200


def test_workflow_output_files_belong_to_the_key_that_ran_it(callers: dict[str, Caller]) -> None:
    """A workflow's file outputs are filed under the caller's key: its workspace reads them, others 404."""
    flow = (
        Workflow("iso/shout")
        .input(text="string")
        .function("make", "apps.wf_files:shout_file", text="{{ start.text }}")
        .output(doc="{{ make.result }}")
        .to_dict()
    )
    admin = callers["admin"]
    assert admin.post("/v1/workflows", json=flow).status_code in (200, 201)
    assert admin.post("/v1/workflows/iso/shout/publish", json={}).status_code == 201
    result = callers["a"].post("/v1/workflows/iso/shout/execute", json={"input": {"text": "hey"}})
    assert result.status_code == 200, result.text
    file_id = result.json()["output"]["doc"].rsplit("/", 1)[-1]
    assert callers["a"].get(f"/v1/files/{file_id}/content").content == b"HEY"
    assert callers["c"].get(f"/v1/files/{file_id}/content").status_code == 200
    other = callers["b"].get(f"/v1/files/{file_id}/content")
    assert other.status_code == 404 and other.json()["error"]["code"] == "file_not_found"
