"""Apps & tasks end to end through the SDK, over both transports (HTTP to a real ``runyard serve``
with its in-process worker, and embedded): wait, no-wait + poll, streams, cancel, sessions,
requirements, bad refs and inputs, webhooks, files, listing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from runyard import (
    Client,
    InvalidRequestError,
    NotFoundError,
    RequirementsNotMetException,
    SessionExpiredError,
    SessionNotFoundError,
    TaskFailedError,
    ValidationError,
)
from runyard.client.tasks import Task
from support.tasks_e2e import WEBHOOK_SECRET, WebhookReceiver

FAST = 0.05  # polling interval for tests


def wait_status(client: Client, task_id: str, statuses: set[str], timeout: float = 10.0) -> Task:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.tasks.get(task_id)
        if task.status in statuses:
            return task
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} never reached {statuses}")


def test_run_waits_for_output_and_resolves_refs(tasks_client: Client) -> None:
    task = tasks_client.run("tests/echo@main", {"text": "ab", "times": 2})
    assert isinstance(task, Task)
    assert task.status == "completed" and task.app == "tests/echo@1.0.0"
    assert task.output == {"text": "abab", "attempt": 1}
    assert task.duration_ms is not None and task.duration_ms >= 0
    # no suffix and @latest: the newest by semver (1.10.0 > 1.2.0 > 1.0.0), not by string order
    assert tasks_client.run("tests/echo", {"text": "ab"}).output["text"] == "AB"
    assert tasks_client.run("tests/echo@latest", {"text": "ab"}).app == "tests/echo@1.10.0"
    assert tasks_client.run("tests/echo@1.2.0", {"text": "ab"}).output["text"] == "ba"


def test_no_wait_then_poll(tasks_client: Client) -> None:
    task = tasks_client.run("tests/steps", {"steps": 3, "delay": 0.05}, wait=False)
    assert isinstance(task, Task)
    assert task.status in ("queued", "processing")
    assert task.output is None
    task.wait(polling_interval=FAST, timeout=10)
    assert task.status == "completed" and task.output == {"steps": 3}
    again = tasks_client.tasks.get(task.id)
    assert again.output == {"steps": 3} and again.progress == 1.0
    assert again.logs == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]


def test_stream_yields_status_log_and_progress_in_order(tasks_client: Client) -> None:
    updates = list(tasks_client.run("tests/steps", {"steps": 4, "delay": 0.02}, stream=True))
    statuses = [u.status for u in updates if u.type == "status"]
    assert statuses[0] == "queued" and statuses[1] == "processing" and statuses[-1] == "completed"
    assert [u.message for u in updates if u.type == "log"] == [f"step {i} of 4" for i in range(1, 5)]
    progress = [u.progress for u in updates if u.type == "progress"]
    assert progress == [0.25, 0.5, 0.75, 1.0]
    seqs = [u.seq for u in updates]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # each log precedes its progress event; all come between processing and completed
    kinds = [u.type for u in updates]
    assert kinds[:2] == ["status", "status"] and kinds[-1] == "status"
    assert kinds[2:-1] == ["log", "progress"] * 4
    assert updates[-1].task is not None and updates[-1].task["output"] == {"steps": 4}


def test_cancel_cooperative_sync_app(tasks_client: Client) -> None:
    task = tasks_client.run("tests/slow", {"seconds": 30}, wait=False)
    assert isinstance(task, Task)
    wait_status(tasks_client, task.id, {"processing"})
    started = time.monotonic()
    task.cancel()
    with pytest.raises(TaskFailedError) as caught:
        task.wait(polling_interval=FAST, timeout=10)
    assert time.monotonic() - started < 5
    assert caught.value.code == "cancelled"
    assert caught.value.task.status == "cancelled" and caught.value.task.id == task.id


def test_cancel_interrupts_an_async_app_that_ignores_it(tasks_client: Client) -> None:
    task = tasks_client.run("tests/stubborn", {"seconds": 30}, wait=False)
    assert isinstance(task, Task)
    wait_status(tasks_client, task.id, {"processing"})
    tasks_client.tasks.cancel(task.id)
    final = wait_status(tasks_client, task.id, {"cancelled", "completed", "failed"}, timeout=5)
    assert final.status == "cancelled"


def test_cancel_queued_task_in_a_busy_pool(tasks_client: Client) -> None:
    busy = tasks_client.run("tests/slow", {"seconds": 30}, wait=False, pool="solo")
    assert isinstance(busy, Task)
    wait_status(tasks_client, busy.id, {"processing"})
    queued = tasks_client.run("tests/echo", {"text": "x"}, wait=False, pool="solo")
    assert isinstance(queued, Task)
    time.sleep(0.3)
    assert tasks_client.tasks.get(queued.id).status == "queued", "pool 'solo' runs one task at a time"
    assert tasks_client.tasks.cancel(queued.id).status == "cancelled"
    busy.cancel()
    assert wait_status(tasks_client, busy.id, {"cancelled"}).status == "cancelled"
    # a finished task cannot be cancelled
    done = tasks_client.run("tests/echo", {"text": "x"})
    with pytest.raises(Exception) as caught:
        tasks_client.tasks.cancel(done.id)
    assert getattr(caught.value, "code", None) == "task_finished"


def test_sessions_keep_state_then_expire(tasks_client: Client) -> None:
    first = tasks_client.run("tests/counter", {"add": 2}, session="new", session_timeout=1, setup={"start": 10})
    assert isinstance(first, Task)
    assert first.output["total"] == 12 and first.session_id
    second = tasks_client.run("tests/counter", {"add": 3}, session=first.session_id)
    assert second.output["total"] == 15 and second.session_id == first.session_id
    other = tasks_client.run("tests/counter", {"add": 1}, session="new", session_timeout=60)
    assert other.output["total"] == 1, "a new session is a new instance"
    assert tasks_client.run("tests/counter", {"add": 1}, session=first.session_id).output["total"] == 16
    time.sleep(1.5)
    with pytest.raises(SessionExpiredError) as caught:
        tasks_client.run("tests/counter", {"add": 1}, session=first.session_id)
    assert caught.value.code == "SESSION_EXPIRED" and caught.value.status == 410
    with pytest.raises(SessionNotFoundError) as missing:
        tasks_client.run("tests/counter", {"add": 1}, session="00000000-0000-0000-0000-000000000000")
    assert missing.value.code == "SESSION_NOT_FOUND" and missing.value.status == 404
    tasks_client.tasks.end_session(other.session_id)
    with pytest.raises(SessionNotFoundError):
        tasks_client.run("tests/counter", {"add": 1}, session=other.session_id)
    with pytest.raises(SessionNotFoundError):
        tasks_client.tasks.end_session(other.session_id)


def test_session_timeout_bounds_and_function_apps(tasks_client: Client) -> None:
    for bad in (0, 3601):
        with pytest.raises(ValidationError):
            tasks_client.run("tests/counter", {}, session="new", session_timeout=bad)
    with pytest.raises(InvalidRequestError) as caught:
        tasks_client.run("tests/echo", {"text": "x"}, session="new")
    assert caught.value.code == "no_sessions"


def test_requirements_not_met(tasks_client: Client) -> None:
    with pytest.raises(RequirementsNotMetException) as caught:
        tasks_client.run("tests/needs-secrets", {})
    err = caught.value
    assert err.code == "REQUIREMENTS_NOT_MET" and err.status == 422
    assert err.errors == [{"type": "secret", "key": "TEST_TOKEN"}, {"type": "integration", "key": "slack"}]
    assert tasks_client.run("tests/has-secret", {}).output == {"ok": True}


@pytest.mark.parametrize(
    "ref,code",
    [
        ("tests/nope", "app_not_found"),
        ("nope", "app_not_found"),
        ("tests/echo@2.0.0", "version_not_found"),
        ("tests/echo@nightly", "alias_not_found"),
        ("tests/echo@stale", "version_not_found"),
    ],
)
def test_unknown_refs_are_404(tasks_client: Client, ref: str, code: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        tasks_client.run(ref, {"text": "x"})
    assert caught.value.code == code and caught.value.status == 404
    if "/" in ref:
        with pytest.raises(NotFoundError) as again:
            tasks_client.request("GET", f"/v1/apps/{ref}")
        assert again.value.code == code


def test_input_violating_schema_is_422_listing_fields(tasks_client: Client) -> None:
    with pytest.raises(ValidationError) as caught:
        tasks_client.run("tests/echo", {"times": 99})
    err = caught.value
    assert err.status == 422 and err.code == "invalid_input"
    assert {d["field"] for d in err.details} == {"input.text", "input.times"}
    with pytest.raises(ValidationError) as body:
        tasks_client.request("POST", "/v1/runs", json={"app": "tests/echo", "input": {}, "bogus": 1})
    assert "bogus" in {d["field"] for d in body.value.details}


def test_app_error_fails_task(tasks_client: Client) -> None:
    with pytest.raises(TaskFailedError) as caught:
        tasks_client.run("tests/fails", {"why": "testing"})
    assert caught.value.code == "app_error"
    assert "boom: testing" in caught.value.message
    assert caught.value.task.status == "failed" and caught.value.task.error["code"] == "app_error"


def test_apps_listing_and_versions(tasks_client: Client) -> None:
    apps = {a["name"]: a for a in tasks_client.request("GET", "/v1/apps")["data"]}
    assert {"tests/echo", "tests/counter", "runyard/chat", "runyard/embed"} <= set(apps)
    echo = apps["tests/echo"]
    assert echo["version"] == "1.10.0" and echo["aliases"] == {"main": "1.0.0", "stale": "9.9.9"}
    assert echo["input_schema"]["required"] == ["text"]
    assert echo["input_schema"]["properties"]["times"]["maximum"] == 10
    assert set(echo["output_schema"]["properties"]) == {"text", "attempt"}
    assert apps["tests/counter"]["sessions"] is True and apps["tests/echo"]["sessions"] is False
    versions = tasks_client.request("GET", "/v1/apps/tests/echo/versions")
    assert [v["version"] for v in versions["data"]] == ["1.10.0", "1.2.0", "1.0.0"]
    one = tasks_client.request("GET", "/v1/apps/tests/echo@main")
    assert one["version"] == "1.0.0" and one["description"] == "Repeat text."
    invert = tasks_client.request("GET", "/v1/apps/tests/invert")
    assert invert["input_schema"]["properties"]["image"]["x-runyard-file"] is True


def test_builtin_chat_app(tasks_client: Client) -> None:
    task = tasks_client.run("runyard/chat", {"model": "dummy::echo", "prompt": "hello app"})
    assert task.output["content"] == "echo: hello app" and task.output["provider"] == "dummy"
    embed = tasks_client.run("runyard/embed", {"model": "dummy::embed", "input": ["a", "b"]})
    assert len(embed.output["embeddings"]) == 2


def test_list_filters_and_cursor(tasks_client: Client) -> None:
    ids = []
    for n in range(3):
        task = tasks_client.run("tests/quick", {"n": n})
        ids.append(task.id)
    page = tasks_client.tasks.list(app="tests/quick", limit=2)
    assert [t["id"] for t in page.data] == ids[::-1][:2] and page.has_more
    rest = tasks_client.tasks.list(app="tests/quick", limit=2, cursor=page.next_cursor)
    assert ids[0] in [t["id"] for t in rest.data]
    assert all(t["app"].startswith("tests/quick@") for t in rest.data)
    assert all("setup" not in t for t in page.data)
    failed = tasks_client.tasks.list(status="failed", limit=200)
    assert all(t["status"] == "failed" for t in failed.data)
    with pytest.raises(InvalidRequestError):
        tasks_client.tasks.list(status="weird")


def test_webhook_signed_and_retried_after_500(tasks_client: Client, webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail_first = 1
    task = tasks_client.run("tests/echo", {"text": "hook"}, webhook=webhook_receiver.url + "/hooks/runyard")
    requests = webhook_receiver.wait_for(2)
    assert len(requests) == 2, "one 500, then the retry"
    for req in requests:
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), req["body"], hashlib.sha256).hexdigest()
        assert req["headers"]["X-Runyard-Signature"] == expected
        assert req["path"] == "/hooks/runyard"
    body = json.loads(requests[1]["body"])
    assert body["id"] == task.id and body["status"] == "completed" and body["output"]["text"] == "HOOK"
    assert requests[0]["body"] == requests[1]["body"]
    assert requests[1]["headers"]["X-Runyard-Event"] == "task.completed"


def test_a_queued_task_cancelled_twice_sends_one_webhook(
    tasks_client: Client, webhook_receiver: WebhookReceiver
) -> None:
    """Cancelling is idempotent and so is its report: the second cancel answers the cancelled task
    and sends no second ``task.cancelled`` webhook (a receiver could not tell the two apart)."""
    busy = tasks_client.run("tests/slow", {"seconds": 30}, wait=False, pool="solo")
    assert isinstance(busy, Task)
    wait_status(tasks_client, busy.id, {"processing"})
    hook = webhook_receiver.url + "/hooks/cancel"
    queued = tasks_client.run("tests/echo", {"text": "x"}, wait=False, pool="solo", webhook=hook)
    assert isinstance(queued, Task)
    assert [tasks_client.tasks.cancel(queued.id).status for _ in range(3)] == ["cancelled"] * 3
    busy.cancel()
    assert wait_status(tasks_client, busy.id, {"cancelled"}).status == "cancelled"
    time.sleep(1.0)  # room for any webhook still on its way
    sent = [r for r in webhook_receiver.requests if r["path"] == "/hooks/cancel"]
    assert len(sent) == 1 and json.loads(sent[0]["body"])["status"] == "cancelled"


def test_files_in_and_out(tasks_client: Client, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40
    source = tmp_path / "in.bin"
    source.write_bytes(payload)
    task = tasks_client.run("tests/invert", {"image": source})  # a local path: uploaded by the SDK
    assert task.input["image"].startswith("runyard://files/")
    out = task.output
    saved = out.save(tmp_path / "out.bin")
    assert saved.read_bytes() == bytes(255 - b for b in payload)
    assert str(out.uri).startswith("runyard://files/") and out.uri != task.input["image"]
    assert task.logs == [f"read {len(payload)} bytes from in.bin"]
    with pytest.raises(NotFoundError) as caught:
        tasks_client.run("tests/invert", {"image": "runyard://files/00000000-0000-7000-8000-000000000000"})
    assert caught.value.code == "file_not_found"
