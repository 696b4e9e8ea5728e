"""The SpeedPix doc's call forms through the real ``speedpix`` client against ``runyard serve``:
the dict form (``run("wf", {"input": {...}, "alias_id": ...})``, with ``"wait": False`` too),
``resource_config_id`` mapped to a worker pool (an unknown id refused), and workflow ids with
underscores, as the doc writes them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from runyard import Client
from runyard.config import hash_api_key
from runyard.workflows import Workflow
from support.gateway import GatewayProcess
from support.tasks_e2e import app_env

speedpix = pytest.importorskip("speedpix")

APP_KEY, APP_SECRET = "sp-doc-key", "sp-doc-secret"
ADMIN_KEY = "ry_sp_doc_admin"
WF = "your_workflow_id"  # as the doc writes it


def _version(tag: str) -> dict[str, object]:
    return Workflow(WF).input(text="string").output(text="{{ start.text }}", tag=tag).to_dict()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("sp-doc")
    path = root / "runyard.toml"
    path.write_text(f"""
[server]
api_keys = ["{hash_api_key(ADMIN_KEY)}"]

[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"

[apps.integrations.speedpix.apps]
{APP_KEY} = "{APP_SECRET}"

[apps.integrations.speedpix.resources]
gpu-a = "gpu"

[pools.gpu]
concurrency = 1

[workers]
concurrency = 2
poll_interval_s = 0.1
""")
    gateway = GatewayProcess(path, env=app_env()).start()
    try:
        with Client(base_url=gateway.url, api_key=ADMIN_KEY, max_retries=0) as admin:
            admin.workflows.save(_version("v1"))
            admin.workflows.publish(WF)  # v1, alias main
            admin.workflows.save(_version("v2"))
            admin.workflows.publish(WF, alias="beta")  # v2
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def client(server: GatewayProcess) -> speedpix.Client:
    return speedpix.Client(app_key=APP_KEY, app_secret=APP_SECRET, endpoint=server.url)


def _task(server: GatewayProcess, task_id: str) -> dict[str, object]:
    answer = httpx.get(f"{server.url}/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    answer.raise_for_status()
    return dict(answer.json())


def test_global_dict_form_unwraps_input_and_honours_alias(
    server: GatewayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPEEDPIX_APP_KEY", APP_KEY)
    monkeypatch.setenv("SPEEDPIX_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("SPEEDPIX_ENDPOINT", server.url)
    monkeypatch.setattr(speedpix, "_default_client", None)
    output = speedpix.run(WF, {"input": {"text": "hello"}, "alias_id": "beta"}, polling_interval=0.05)
    assert output == {"text": "hello", "tag": "v2"}
    plain = speedpix.run(WF, {"input": {"text": "plain"}}, polling_interval=0.05)
    assert plain == {"text": "plain", "tag": "v1"}  # alias main by default


def test_dict_form_with_wait_false_and_a_version(client: speedpix.Client) -> None:
    output = client.run(WF, {"input": {"text": "w"}, "wait": False, "version_id": "2"}, polling_interval=0.05)
    assert output == {"text": "w", "tag": "v2"}  # the client itself waits (its own wait= is True)
    prediction = client.predictions.create(workflow_id=WF, input={"input": {"text": "p"}, "wait": False})
    prediction.wait(polling_interval=0.05)
    assert prediction.status == "succeeded" and prediction.output == {"text": "p", "tag": "v1"}


def test_keyword_form_still_passes_inputs_as_given(client: speedpix.Client) -> None:
    output = client.run(workflow_id=WF, input={"text": "kw"}, alias_id="main", polling_interval=0.05)
    assert output == {"text": "kw", "tag": "v1"}


def test_resource_config_id_picks_the_worker_pool(server: GatewayProcess, client: speedpix.Client) -> None:
    dedicated = client.predictions.create(workflow_id=WF, input={"text": "d"}, resource_config_id="gpu-a")
    dedicated.wait(polling_interval=0.05)
    assert dedicated.output == {"text": "d", "tag": "v1"}
    assert _task(server, dedicated.id)["pool"] == "gpu"
    shared = client.predictions.create(workflow_id=WF, input={"text": "s"})  # "default": shared
    assert _task(server, shared.id)["pool"] == "shared"
    in_dict = client.run(WF, {"input": {"text": "x"}, "resource_config_id": "gpu-a"}, wait=False)
    assert _task(server, in_dict.id)["pool"] == "gpu"


def test_unknown_resource_config_id_is_refused(client: speedpix.Client) -> None:
    with pytest.raises(Exception, match="unknown_resource_config") as info:
        client.run(WF, input={"text": "t"}, resource_config_id="nope", polling_interval=0.05)
    assert "gpu-a" in str(info.value)  # says which ids exist


def test_underscored_workflow_ids_save_and_run(server: GatewayProcess, client: speedpix.Client) -> None:
    with Client(base_url=server.url, api_key=ADMIN_KEY, max_retries=0) as admin:
        admin.workflows.save(Workflow("my_team/white_bg").input(text="string").output(t="{{ start.text }}").to_dict())
        admin.workflows.publish("my_team/white_bg")
    assert client.run("my_team/white_bg", {"input": {"text": "u"}}, polling_interval=0.05) == {"t": "u"}
