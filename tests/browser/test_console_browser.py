"""The console in headless Chromium against a real ``runyard serve``: data made through the SDK,
then found, inspected and steered in the browser, and checked again through the API."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard import Client
from runyard.agents import app_tool, string
from runyard.errors import AuthenticationError
from runyard.workflows import Workflow
from support.console import ADMIN_KEY, create_key, sign_in
from support.gateway import GatewayProcess
from support.openai_mock import B, MockOpenAI

pytestmark = pytest.mark.browser

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_sign_in_filter_inference_attempts_cost_and_feedback(
    page: Any, console_server: GatewayProcess, admin: Client, mock_openai: MockOpenAI, screenshots: Path
) -> None:
    admin.ai.chat("an unrelated question", model="gpt")
    mock_openai.script(B.status(500))  # the primary route fails: the fallback answers
    result = admin.ai.chat("where is the fallback?", model="gpt-fallback")
    admin.ai.chat("another unrelated one", model="gpt")

    page.goto(console_server.url + "/ui/inferences")
    assert page.url.endswith("/ui/signin")  # nothing without a session
    shot(page, screenshots, "signin")
    sign_in(page, console_server, ADMIN_KEY)
    page.wait_for_selector(".uplot-host canvas")  # the charts drew
    shot(page, screenshots, "overview")

    page.click("text=Inferences")
    page.fill("#inference-filters input[name=model]", "gpt-fallback")
    page.click("#inference-filters button[type=submit]")
    page.wait_for_url(re.compile(r"model=gpt-fallback"))
    rows = page.locator("tr.inference-row")
    assert rows.count() >= 1
    assert set(page.locator("tr.inference-row td:nth-child(2)").all_inner_texts()) == {"gpt-fallback"}
    shot(page, screenshots, "inferences")

    page.click(f"tr.inference-row[data-id='{result.inference_id}'] a")
    page.wait_for_url(re.compile(result.inference_id))
    attempts = page.locator("tr.attempt")
    assert attempts.count() == 2
    assert "failed" in attempts.nth(0).inner_text() and "mock::gpt-primary" in attempts.nth(0).inner_text()
    assert "answered" in attempts.nth(1).inner_text() and "backup::gpt-secondary" in attempts.nth(1).inner_text()
    assert re.search(r"\$\d", page.locator("#cost").inner_text())  # a price is configured: a cost shows
    assert "where is the fallback?" in page.locator("#input").inner_text()

    page.select_option("#feedback-form select[name=metric]", "thumbs_up")
    page.fill("#feedback-form input[name=value]", "true")
    page.click("#feedback-form button[type=submit]")
    page.wait_for_selector("#note")
    assert page.locator("tr.feedback-row").count() == 1
    shot(page, screenshots, "inference")
    stored = admin.request("GET", f"/v1/inferences/{result.inference_id}")
    assert [(f["metric_name"], f["value"]) for f in stored["feedback"]] == [("thumbs_up", True)]


def test_task_progress_updates_live_and_cancel(
    page: Any, console_server: GatewayProcess, admin: Client, screenshots: Path
) -> None:
    task = admin.run("tests/steps", {"steps": 100, "delay": 0.2}, wait=False)
    sign_in(page, console_server, ADMIN_KEY)
    page.goto(f"{console_server.url}/ui/tasks/{task.id}")
    page.wait_for_function("() => document.getElementById('task-progress').value > 0")
    first = page.evaluate("document.getElementById('task-progress').value")
    page.wait_for_function("(v) => document.getElementById('task-progress').value > v", arg=first)  # live
    page.wait_for_function("() => document.querySelectorAll('#task-logs li').length >= 2")
    lines = page.locator("#task-logs li").all_inner_texts()
    assert lines[0] == "step 1 of 100" and len(lines) == len(set(lines))  # in order, none twice
    shot(page, screenshots, "task-running")

    page.click("#cancel-form button")
    assert page.dialogs and "Cancel this task" in page.dialogs[-1]
    page.wait_for_function("() => document.getElementById('task-status').textContent.trim() === 'cancelled'")
    assert admin.tasks.get(task.id).status == "cancelled"
    shot(page, screenshots, "task-cancelled")

    page.goto(console_server.url + "/ui/tasks?status=cancelled")
    assert page.locator(f"tr.task-row[data-id='{task.id}']").count() == 1
    shot(page, screenshots, "tasks")


def test_approve_pending_tool_call_and_chat_finishes(
    page: Any, console_server: GatewayProcess, admin: Client, mock_openai: MockOpenAI, screenshots: Path
) -> None:
    name = f"tests/deployer-{uuid.uuid4().hex[:6]}"
    deploy = app_tool("deploy", "tests/echo@1.0.0").param("text", string()).require_approval().build()
    admin.agents.create(name, {"model": "gpt", "tools": [deploy]})
    agent = admin.agent(f"{name}@1")
    mock_openai.script(
        B.reply(tool_calls=[{"id": "call_ok", "name": "deploy", "arguments": {"text": "v7"}}]),
        B.reply("deployed v7, all done"),
    )
    paused = agent.send_message("please deploy v7")
    assert paused.status == "awaiting_approval"

    sign_in(page, console_server, ADMIN_KEY)
    page.goto(console_server.url + "/ui/agents?awaiting=1")
    assert name in page.locator("#agent-templates").inner_text()
    shot(page, screenshots, "agents")
    page.click(f"a[href='/ui/chats/{agent.chat_id}']")
    assert page.locator(".approval[data-call=call_ok]").count() == 1
    shot(page, screenshots, "chat-awaiting")
    page.click(".approval[data-call=call_ok] button.approve")
    page.wait_for_selector("#note")
    assert page.locator("#chat-status").inner_text() == "idle"
    assert "deployed v7, all done" in page.locator("#transcript").inner_text()
    shot(page, screenshots, "chat")
    page.goto(f"{console_server.url}/ui/agents/{name}")
    assert "v1 · model gpt" in page.locator("details summary").first.inner_text()
    assert page.locator(f"a[href='/ui/chats/{agent.chat_id}']").count() == 1
    shot(page, screenshots, "agent-template")
    chat = agent.get_chat()
    assert chat["status"] == "idle" and chat["tool_calls"][0]["approval"]["approved"] is True
    assert chat["tool_calls"][0]["result"]["text"] == "v7"


def simple_flow(name: str, tag: str, description: str = "") -> dict[str, Any]:
    return (
        Workflow(name, description)
        .input(text="string")
        .function("f", "apps.flows:shout", text=tag + "{{ start.text }}")
        .output(value="{{ f.text }}")
        .to_dict()
    )


def test_move_workflow_alias_and_next_run_uses_it(
    page: Any, console_server: GatewayProcess, admin: Client, screenshots: Path
) -> None:
    name = f"tests/console-{uuid.uuid4().hex[:6]}"
    admin.workflows.save(simple_flow(name, "one-"))
    admin.workflows.publish(name)
    admin.workflows.save(simple_flow(name, "two-"))
    admin.workflows.publish(name)
    assert admin.workflows.execute(name, {"text": "x"})["output"] == {"value": "TWO-X"}

    sign_in(page, console_server, ADMIN_KEY)
    page.goto(console_server.url + "/ui/workflows")
    shot(page, screenshots, "workflows")
    page.click(f"text={name}")
    assert page.locator("#dag svg g.node").count() == 3  # start, f, out
    assert page.locator("#dag svg path.edge").count() == 2
    page.select_option("#alias-form select[name=version]", "1")
    page.click("#alias-form button[type=submit]")
    assert page.dialogs and "Move this alias" in page.dialogs[-1]
    page.wait_for_selector("#note")
    assert page.locator(".alias-version[data-alias=main]").inner_text() == "v1"

    assert admin.workflows.execute(name, {"text": "x"})["output"] == {"value": "ONE-X"}
    page.reload()
    assert page.locator("tr.run-row td.run-version").first.inner_text() == "v1"
    shot(page, screenshots, "workflow")
    page.click("tr.run-row a >> nth=0")
    page.wait_for_selector("#waterfall svg rect")
    assert page.locator("details.span").count() == 3
    shot(page, screenshots, "workflow-run")


def test_create_key_use_it_revoke_it(page: Any, console_server: GatewayProcess, screenshots: Path) -> None:
    sign_in(page, console_server, ADMIN_KEY)
    page.goto(console_server.url + "/ui/keys")
    page.fill("#key-form input[name=name]", "made-in-browser")
    page.fill("#key-form input[name=workspace]", "team-browser")
    page.fill("#key-form input[name=rpm_sync]", "100")
    page.click("#key-form button[type=submit]")
    secret = page.locator("#new-key-secret").inner_text().strip()
    key_id = page.locator("#new-key-id").inner_text().strip()
    assert secret.startswith("ry_")
    shot(page, screenshots, "keys")

    with Client(base_url=console_server.url, api_key=secret, max_retries=0) as client:
        assert client.ai.chat("hello with the new key", model="gpt").content
        page.goto(console_server.url + "/ui/keys")  # usage against limits shows what it spent
        assert page.locator("#created-key").count() == 0  # the secret was shown once
        row = page.locator(f"tr.key-row[data-id='{key_id}']")
        assert row.locator("td:nth-child(5)").inner_text() != "0 / 0" and "sync 100/min" in row.inner_text()
        page.click(f"tr.key-row[data-id='{key_id}'] .revoke-form button")
        assert page.dialogs and "Revoke this key" in page.dialogs[-1]
        page.wait_for_selector(f"tr.key-row.revoked[data-id='{key_id}']")
        with pytest.raises(AuthenticationError):
            client.ai.chat("after revocation", model="gpt")


def test_store_key_sees_only_its_workspace(page: Any, console_server: GatewayProcess, screenshots: Path) -> None:
    key_a = create_key(console_server, "alpha-key", "alpha")
    key_b = create_key(console_server, "beta-key", "beta")
    with Client(base_url=console_server.url, api_key=key_a["key"], max_retries=0) as a:
        mine = a.ai.chat("alpha's question", model="gpt")
        a.run("tests/echo@1.0.0", {"text": "alpha task"})
    with Client(base_url=console_server.url, api_key=key_b["key"], max_retries=0) as b:
        theirs = b.ai.chat("beta's secret question", model="gpt")
        their_task = b.run("tests/echo@1.0.0", {"text": "beta task"})

    sign_in(page, console_server, key_a["key"])
    assert "workspace alpha" in page.locator("header .who").inner_text()
    assert page.locator("a[href='/ui/keys']").count() == 0
    page.goto(console_server.url + "/ui/inferences")
    ids = page.locator("tr.inference-row").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert mine.inference_id in ids and theirs.inference_id not in ids
    assert set(page.locator("tr.inference-row td:nth-child(9)").all_inner_texts()) == {"alpha-key"}
    choices = page.locator("#inference-filters select[name=key] option").all_inner_texts()
    assert "alpha-key (alpha)" in choices and not any("beta" in c for c in choices)  # no other workspace's keys
    shot(page, screenshots, "inferences-workspace")
    response = page.goto(f"{console_server.url}/ui/inferences/{theirs.inference_id}")
    assert response is not None and response.status == 404
    page.goto(console_server.url + "/ui/tasks")
    assert page.locator(f"tr.task-row[data-id='{their_task.id}']").count() == 0
    assert page.locator("tr.task-row").count() >= 1
    response = page.goto(f"{console_server.url}/ui/tasks/{their_task.id}")
    assert response is not None and response.status == 404
    response = page.goto(console_server.url + "/ui/keys")
    assert response is not None and response.status == 403
    page.goto(console_server.url + "/ui/usage?group_by=key")
    assert set(page.locator("#usage-table tbody td:first-child").all_inner_texts()) == {"alpha-key"}
    shot(page, screenshots, "usage")
    page.goto(console_server.url + "/ui/")
    assert page.locator("#ops").count() == 0  # runtime internals are the operator's
    shot(page, screenshots, "overview-workspace")


def test_stored_markup_never_runs(page: Any, console_server: GatewayProcess, admin: Client, screenshots: Path) -> None:
    result = admin.ai.chat(XSS, model="gpt")
    uploaded = admin.files.upload(b"\x89PNG\r\n\x1a\n" + b"0" * 32, filename=XSS + ".html", content_type="text/html")
    task = admin.run("tests/echo@1.0.0", {"text": uploaded.uri})
    name = f"tests/xss-{uuid.uuid4().hex[:6]}"
    admin.workflows.save(simple_flow(name, XSS, description=XSS))
    with pytest.raises(Exception):  # noqa: B017 - markup is not a valid workflow name in the first place
        admin.workflows.save(simple_flow("tests/<script>", "x"))

    sign_in(page, console_server, ADMIN_KEY)
    for path in (
        f"/ui/inferences/{result.inference_id}",
        "/ui/inferences",
        f"/ui/tasks/{task.id}",
        f"/ui/workflow?name={name}",
        "/ui/workflows",
    ):
        page.goto(console_server.url + path)
        page.wait_for_load_state("load")
        assert page.evaluate("() => typeof window.__xss") == "undefined", path
    assert page.dialogs == []
    page.goto(f"{console_server.url}/ui/tasks/{task.id}")
    # the file service keeps a safe form of the name; the page shows exactly that, as text
    assert page.locator("#task-output a.download").inner_text() == uploaded.filename
    shot(page, screenshots, "xss-task")
    page.goto(f"{console_server.url}/ui/inferences/{result.inference_id}")
    assert "<script>window.__xss = 1</script>" in page.locator("#input").inner_text()

    download = page.request.get(f"{console_server.url}/ui/files/{uploaded.id}")
    assert download.status == 200
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["content-type"] == "application/octet-stream"
    inline = page.request.get(f"{console_server.url}/ui/files/{uploaded.id}?inline=1")
    assert inline.headers["content-disposition"].startswith("attachment;")  # html never renders inline
    assert httpx.get(f"{console_server.url}/ui/files/{uploaded.id}").status_code in (303, 307)


def tiny_png() -> bytes:
    """A valid 2x2 red PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def tiny_wav() -> bytes:
    import io
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    return out.getvalue()


def test_task_files_preview_and_download(
    page: Any, console_server: GatewayProcess, admin: Client, screenshots: Path
) -> None:
    image = admin.files.upload(tiny_png(), filename="red.png", content_type="image/png")
    sound = admin.files.upload(tiny_wav(), filename="beep.wav", content_type="audio/wav")
    pictured = admin.run("tests/echo@1.0.0", {"text": image.uri})
    heard = admin.run("tests/echo@1.0.0", {"text": sound.uri})
    sign_in(page, console_server, ADMIN_KEY)
    page.goto(f"{console_server.url}/ui/tasks/{heard.id}")
    page.wait_for_function("() => { const a = document.querySelector('audio.media'); return a && a.duration > 0; }")
    assert page.locator("a.download").first.inner_text() == "beep.wav"
    page.goto(f"{console_server.url}/ui/tasks/{pictured.id}")
    page.wait_for_function("() => { const i = document.querySelector('img.media'); return i && i.naturalWidth === 2; }")
    assert page.locator("a.download").first.inner_text() == "red.png"
    shot(page, screenshots, "task-files")
    with page.expect_download() as info:
        page.click("a.download >> nth=0")
    assert info.value.suggested_filename == "red.png"
