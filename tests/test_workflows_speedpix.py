"""The real ``speedpix`` package (unchanged, from PyPI) against ``runyard serve``: signed calls
(verified server-side; a wrong secret is 401), ``client.run`` with a local image uploaded through
``files.create``'s sign + PUT flow, ``predictions.create/get/wait``, and ``FileOutput.save``."""

from __future__ import annotations

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
