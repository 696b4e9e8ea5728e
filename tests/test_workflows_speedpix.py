"""The real ``speedpix`` package (unchanged, from PyPI) against ``runyard serve``: signed calls
(verified server-side; a wrong secret is 401), ``client.run`` with a local image uploaded through
``files.create``'s sign + PUT flow, ``predictions.create/get/wait``, and ``FileOutput.save``."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runyard import Client
from runyard.config import hash_api_key
from runyard.workflows import Workflow
from support.gateway import GatewayProcess
from support.tasks_e2e import app_env

speedpix = pytest.importorskip("speedpix")

APP_KEY, APP_SECRET = "sp-app-key", "sp-app-secret"
ADMIN_KEY = "ry_sp_admin"
PIXELS = bytes(range(0, 200, 7))


@pytest.fixture(scope="module")
def sp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("wf-speedpix")
    path = root / "runyard.toml"
    path.write_text(f"""
[server]
api_keys = ["{hash_api_key(ADMIN_KEY)}"]

[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"

[files]
dir = "{root / "files"}"

[apps]
modules = ["apps.flows"]

[apps.integrations.speedpix.apps]
{APP_KEY} = "{APP_SECRET}"

[workers]
concurrency = 4
poll_interval_s = 0.1
""")
    server = GatewayProcess(path, env=app_env()).start()
    try:
        with Client(base_url=server.url, api_key=ADMIN_KEY, max_retries=0) as client:
            client.workflows.save(
                Workflow("sp/invert")
                .input(image="file", note={"type": "string", "default": "-"})
                .function("inv", "apps.flows:invert", image="{{ start.image }}")
                .output(image="{{ inv.result }}", note="{{ start.note }}")
                .to_dict()
            )
            client.workflows.publish("sp/invert")
        yield server
    finally:
        server.stop()


def test_speedpix_run_with_files_and_predictions(
    sp_server: GatewayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.png").write_bytes(PIXELS)
    client = speedpix.Client(app_key=APP_KEY, app_secret=APP_SECRET, endpoint=sp_server.url)
    output = client.run(
        workflow_id="sp/invert", input={"note": "hi", "image": "./in.png"}, alias_id="main", polling_interval=0.05
    )
    assert output["note"] == "hi"
    target = tmp_path / "out.png"
    assert "/scc/files/" in output["image"].url  # signed for this app: no API key needed
    output["image"].save(str(target))
    assert httpx.get(output["image"].url[:-4] + "0000").status_code == 404  # a tampered signature
    assert target.read_bytes() == bytes(255 - b for b in PIXELS)

    uploaded = client.files.create(tmp_path / "in.png")
    assert uploaded.access_url and httpx.get(uploaded.access_url, follow_redirects=True).content == PIXELS
    prediction = client.predictions.create(
        workflow_id="sp/invert", input={"image": uploaded.access_url}, version_id="1"
    )
    assert prediction.status in ("waiting", "running")
    again = client.predictions.get(prediction.id)
    assert again.id == prediction.id
    prediction.wait(polling_interval=0.05)
    assert prediction.status == "succeeded" and prediction.output["note"] == "-"


def test_speedpix_wrong_secret_is_401(sp_server: GatewayProcess) -> None:
    bad = speedpix.Client(app_key=APP_KEY, app_secret="wrong", endpoint=sp_server.url)
    with pytest.raises(httpx.HTTPStatusError) as info:
        bad.predictions.create(workflow_id="sp/invert", input={"image": "x"})
    assert info.value.response.status_code == 401


def test_upload_urls_are_signed_and_single_use(sp_server: GatewayProcess, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(PIXELS)
    client = speedpix.Client(app_key=APP_KEY, app_secret=APP_SECRET, endpoint=sp_server.url)
    uploaded = client.files.create(tmp_path / "a.png")  # sign + PUT
    assert httpx.get(uploaded.access_url).content == PIXELS
    again = httpx.put(uploaded.upload_url, content=b"other", headers={"Content-Type": "image/png"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "file_exists"
    forged = uploaded.upload_url.split("?")[0][:-4] + "0000"
    assert httpx.put(forged, content=b"x").status_code == 404
    assert httpx.get(uploaded.access_url[:-4] + "0000").status_code == 404


LINKED_APP, LINKED_SECRET = "sp-linked", "linked-secret"
FREE_APP, FREE_SECRET = "sp-free", "free-secret"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path, str]]:
    """A server whose SpeedPix apps are limited: one linked to an API key (rpm_async = 2), one
    on the [limits] defaults (rpm_async = 1)."""
    root = tmp_path_factory.mktemp("wf-speedpix-limits")
    path = root / "runyard.toml"
    base = f"""
[server]
api_keys = ["{hash_api_key(ADMIN_KEY)}"]
api_key_refresh_s = 0.2

[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"

[limits]
window_s = 60
rpm_async = 1

[workers]
concurrency = 2
poll_interval_s = 0.1
"""
    path.write_text(base)
    created = _cli("keys", "create", "--name", "speedpix", "--rpm-async", "2", "--config", str(path))
    key_id = created.stdout.split()[2]
    path.write_text(
        base
        + f"""
[apps.integrations.speedpix.apps]
{FREE_APP} = "{FREE_SECRET}"
{LINKED_APP} = {{ secret = "{LINKED_SECRET}", api_key = "{key_id}" }}
"""
    )
    server = GatewayProcess(path, env=app_env()).start()
    try:
        with Client(base_url=server.url, api_key=ADMIN_KEY, max_retries=0) as admin:
            admin.workflows.save(Workflow("sp/echo").input(note="string").output(note="{{ start.note }}").to_dict())
            admin.workflows.publish("sp/echo")
        yield server, path, key_id
    finally:
        server.stop()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runyard", *args], capture_output=True, text=True, timeout=60, check=True
    )


def _submit(server: GatewayProcess, app: str, secret: str) -> str:
    client = speedpix.Client(app_key=app, app_secret=secret, endpoint=server.url)
    return str(client.predictions.create(workflow_id="sp/echo", input={"note": "n"}).id)


def _refused(server: GatewayProcess, app: str, secret: str) -> httpx.Response:
    with pytest.raises(httpx.HTTPStatusError) as info:
        _submit(server, app, secret)
    return info.value.response


def test_signed_calls_count_against_their_limits(limited: tuple[GatewayProcess, Path, str]) -> None:
    server, _, _ = limited
    _submit(server, LINKED_APP, LINKED_SECRET)
    _submit(server, LINKED_APP, LINKED_SECRET)  # the linked key allows 2 a minute
    over = _refused(server, LINKED_APP, LINKED_SECRET)
    assert over.status_code == 429 and over.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(over.headers["retry-after"]) >= 1
    assert int(over.headers["x-ratelimit-limit"]) == 2 and int(over.headers["x-ratelimit-remaining"]) == 0

    _submit(server, FREE_APP, FREE_SECRET)  # an unlinked app: the [limits] default of 1
    assert _refused(server, FREE_APP, FREE_SECRET).status_code == 429


def test_polls_carry_rate_headers_and_a_revoked_key_shuts_its_app_out(
    limited: tuple[GatewayProcess, Path, str],
) -> None:
    server, path, key_id = limited
    client = speedpix.Client(app_key=LINKED_APP, app_secret=LINKED_SECRET, endpoint=server.url)
    with pytest.raises(httpx.HTTPStatusError):  # the previous test spent this minute's submissions
        client.predictions.create(workflow_id="sp/echo", input={"note": "n"})
    _cli("keys", "revoke", key_id, "--config", str(path))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        response = _refused(server, LINKED_APP, LINKED_SECRET)
        if response.status_code == 401:
            break
        time.sleep(0.1)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_an_app_sees_only_the_predictions_it_made(limited: tuple[GatewayProcess, Path, str]) -> None:
    server, _, _ = limited
    mine = speedpix.Client(app_key=FREE_APP, app_secret=FREE_SECRET, endpoint=server.url)
    with Client(base_url=server.url, api_key=ADMIN_KEY, max_retries=0) as admin:
        theirs = admin.workflows.execute("sp/echo", {"note": "private"}, async_execution=True)["task_id"]
        assert admin.jobs.wait(theirs, polling_interval=0.05, timeout=20)["status"] == "completed"
    seen = mine.predictions.get(theirs)  # answered like an unknown id: the client marks it failed
    assert seen.status == "failed" and seen.output is None


def _signed(path: str, *, secret: str = APP_SECRET, ts: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """Headers signed as the speedpix client signs them (shared/protocols/speedpix.md)."""
    import base64
    import hashlib
    import hmac
    import uuid

    h = {
        "accept": "application/json",
        "content-type": "application/json",
        "x-ca-key": APP_KEY,
        "x-ca-nonce": nonce or str(uuid.uuid4()),
        "x-ca-signature-method": "HmacSHA256",
        "x-ca-timestamp": str(ts if ts is not None else int(time.time() * 1000)),
    }
    names = ("x-ca-key", "x-ca-nonce", "x-ca-signature-method", "x-ca-timestamp")
    text = "\n".join(["POST", h["accept"], "", h["content-type"], "", *(f"{n}:{h[n]}" for n in names), path])
    h["x-ca-signature"] = base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()
    return h


def test_signed_calls_cannot_be_replayed(sp_server: GatewayProcess) -> None:
    path = "/scc/comfy_get_progress"
    body = {"task_id": "nope"}
    headers = _signed(path)
    first = httpx.post(sp_server.url + path, json=body, headers=headers)
    assert first.status_code == 200  # verified (the task is unknown: an err_code answer)
    again = httpx.post(sp_server.url + path, json=body, headers=headers)
    assert again.status_code == 401 and again.json()["error"]["code"] == "nonce_reused"
    stale = _signed(path, ts=int((time.time() - 3600) * 1000))
    old = httpx.post(sp_server.url + path, json=body, headers=stale)
    assert old.status_code == 401 and old.json()["error"]["code"] == "signature_expired"
