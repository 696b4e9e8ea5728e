"""The console's security over real HTTP (``runyard serve``): cookie flags, CSRF on every form,
sign-in through the API's key check, revocation ending sessions, open mode on loopback only."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runyard import Client
from support.console import ADMIN_KEY, create_key, start_console_server
from support.gateway import GatewayProcess
from support.openai_mock import MockOpenAI


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


@contextlib.contextmanager
def signed_in(server: GatewayProcess, key: str) -> Iterator[httpx.Client]:
    """An HTTP client holding a console session for ``key``."""
    with httpx.Client(base_url=server.url) as http:
        token = csrf_of(http.get("/ui/signin").text)
        response = http.post("/ui/signin", data={"csrf": token, "key": key})
        assert response.status_code == 303 and response.headers["location"] == "/ui"
        yield http


@pytest.fixture
def console(console_server: GatewayProcess) -> Iterator[httpx.Client]:
    with signed_in(console_server, ADMIN_KEY) as http:
        yield http


def test_session_cookie_is_httponly_strict_and_pages_need_it(console_server: GatewayProcess) -> None:
    first = httpx.get(console_server.url + "/ui/inferences")
    assert first.status_code == 303 and first.headers["location"] == "/ui/signin"
    cookie = first.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    with httpx.Client(base_url=console_server.url) as http:
        token = csrf_of(http.get("/ui/signin").text)
        bad = http.post("/ui/signin", data={"csrf": token, "key": "ry_not-a-key"})
        assert bad.status_code == 401 and "not valid" in bad.text
        assert http.get("/ui/").status_code == 303  # still signed out
        response = http.post("/ui/signin", data={"csrf": token, "key": ADMIN_KEY})
        assert response.status_code == 303
        fresh = response.headers["set-cookie"].lower()
        assert "httponly" in fresh and "samesite=strict" in fresh
        page = http.get("/ui/")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert ADMIN_KEY not in page.text  # the key is never rendered back


def test_every_form_refuses_a_post_without_its_token(
    console_server: GatewayProcess, console: httpx.Client, admin: Client
) -> None:
    result = admin.ai.chat("csrf target", model="gpt")
    task = admin.run("tests/steps", {"steps": 50, "delay": 0.2}, wait=False)
    victim = create_key(console_server, "csrf-victim", "csrf")
    keys_before = len(admin.request("GET", "/v1/keys")["data"])
    posts = [
        (f"/ui/inferences/{result.inference_id}/feedback", {"metric": "comment", "value": "forged"}),
        (f"/ui/tasks/{task.id}/cancel", {}),
        ("/ui/keys", {"name": "forged"}),
        (f"/ui/keys/{victim['id']}/revoke", {}),
        ("/ui/workflow/alias", {"name": "x/y", "alias": "main", "version": "1", "confirm": "yes"}),
        ("/ui/chats/00000000-0000-0000-0000-000000000000/approval", {"call_id": "c", "decision": "approve"}),
        ("/ui/signout", {}),
    ]
    for path, form in posts:
        for token in (None, "wrong-token"):
            data = form if token is None else {**form, "csrf": token}
            response = console.post(path, data=data)
            assert response.status_code == 403, (path, response.status_code)
            assert "csrf_failed" in response.text
    assert admin.request("GET", f"/v1/inferences/{result.inference_id}")["feedback"] == []
    assert admin.tasks.get(task.id).status in ("queued", "processing")
    assert len(admin.request("GET", "/v1/keys")["data"]) == keys_before
    with Client(base_url=console_server.url, api_key=victim["key"], max_retries=0) as still_valid:
        assert still_valid.ai.chat("still here", model="gpt").content
    assert console.get("/ui/").status_code == 200  # the forged sign-out did nothing
    admin.tasks.cancel(task.id)


def test_keys_api_is_admin_only_and_validated(console_server: GatewayProcess, admin: Client) -> None:
    url = console_server.url + "/v1/keys"
    assert httpx.get(url).status_code == 401
    store = create_key(console_server, "plain", "ws-one")
    assert "key_hash" not in store and store["key"].startswith("ry_") and store["workspace"] == "ws-one"
    as_store = {"Authorization": f"Bearer {store['key']}"}
    refused = httpx.get(url, headers=as_store)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_required"
    admin_headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for body in (
        {},
        {"name": ""},
        {"name": "x", "rpm_sync": -1},
        {"name": "x", "period": "day"},
        {"name": "x", "y": 1},
    ):
        bad = httpx.post(url, json=body, headers=admin_headers)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error", body
    assert httpx.post(url, content=b"{nope", headers=admin_headers).json()["error"]["code"] == "invalid_json"
    listed = httpx.get(url, headers=admin_headers).json()["data"]
    assert store["id"] in [k["id"] for k in listed] and all("key_hash" not in k for k in listed)
    missing = httpx.delete(url + "/nope", headers=admin_headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"
    revoked = httpx.delete(f"{url}/{store['id']}", headers=admin_headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert httpx.get(console_server.url + "/v1/usage", headers=as_store).status_code == 401  # at once
    active = httpx.get(url, params={"active": "true"}, headers=admin_headers).json()["data"]
    assert store["id"] not in [k["id"] for k in active]


def test_revoking_a_key_ends_its_console_session(console_server: GatewayProcess, admin: Client) -> None:
    key = create_key(console_server, "short-lived", "temp")
    with signed_in(console_server, key["key"]) as http:
        assert http.get("/ui/inferences").status_code == 200
        assert http.get("/ui/keys").status_code == 403  # a store key is no admin
        admin.request("DELETE", f"/v1/keys/{key['id']}")
        response = http.get("/ui/inferences")
        assert response.status_code == 303 and response.headers["location"] == "/ui/signin"


def test_open_console_only_on_loopback(tmp_path: Path, _mock_openai_server: MockOpenAI) -> None:
    server = start_console_server(tmp_path / "open", _mock_openai_server.url, keys=False)
    try:
        page = httpx.get(server.url + "/ui/")
        assert page.status_code == 200 and 'id="open-banner"' in page.text
    finally:
        server.stop()
    root = tmp_path / "wide"
    root.mkdir()
    (root / "runyard.toml").write_text(
        (tmp_path / "open" / "runyard.toml").read_text().replace('host = "127.0.0.1"', 'host = "0.0.0.0"')
    )
    from support.tasks_e2e import app_env

    wide = GatewayProcess(root / "runyard.toml", env=app_env(), args=["--host", "127.0.0.1"]).start()
    try:
        closed = httpx.get(wide.url + "/ui/")
        assert closed.status_code == 403 and "console_closed" in closed.text
    finally:
        wide.stop()


def test_key_form_refuses_bad_limits_with_a_message(console: httpx.Client, admin: Client) -> None:
    before = len(admin.request("GET", "/v1/keys")["data"])
    token = csrf_of(console.get("/ui/keys").text)
    bad = console.post("/ui/keys", data={"csrf": token, "name": "x", "rpm_sync": "-5", "period": "day"})
    assert bad.status_code == 400 and 'id="key-error"' in bad.text
    assert len(admin.request("GET", "/v1/keys")["data"]) == before
    made = console.post("/ui/keys", data={"csrf": token, "name": "form-made", "workspace": "forms"})
    assert made.status_code == 303 and made.headers["location"] == "/ui/keys"
    shown = console.get("/ui/keys").text
    secret = re.search(r'id="new-key-secret">([^<]+)<', shown)
    assert secret and secret.group(1).startswith("ry_")
    assert 'id="new-key-secret"' not in console.get("/ui/keys").text  # once
