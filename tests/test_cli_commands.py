"""The CLI's listings and getters against a real ``runyard serve`` started from another folder than its
config, whose ``[apps] modules`` entry is a ``my_apps.py`` beside ``runyard.toml``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.gateway import free_port

SRC = Path(__file__).resolve().parent.parent / "src"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

MY_APPS = """
from pydantic import BaseModel
import runyard

class HelloIn(BaseModel):
    name: str

@runyard.app("acme/hello", version="1.0.0", description="Greets.")
def hello(input: HelloIn, ctx: runyard.AppContext) -> dict:
    return {"greeting": f"Hello, {input.name}!"}
"""


def env() -> dict[str, str]:
    """Only the package on the path: ``my_apps`` is found through the config's folder or not at all."""
    out = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "80"}
    for name in ("RUNYARD_BASE_URL", "RUNYARD_CONFIG"):
        out.pop(name, None)
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "my_apps.py").write_text(MY_APPS)
    (root / "runyard.toml").write_text(
        f'[apps]\nmodules = ["my_apps"]\n[storage]\nurl = "sqlite+aiosqlite:///{root / "runyard.db"}"\n'
        f'flush_interval_ms = 20\n[files]\ndir = "{root / "files"}"\n'
    )
    return root


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("elsewhere")


@pytest.fixture(scope="module")
def server(project: Path, elsewhere: Path) -> Iterator[str]:
    """``runyard serve --config <project>/runyard.toml``, started in another folder."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (elsewhere / "serve.log").open("wb")
    args = [sys.executable, "-m", "runyard", "serve", "--config", str(project / "runyard.toml"), "--port", str(port)]
    proc = subprocess.Popen(args, cwd=elsewhere, env=env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (elsewhere / "serve.log").read_text()
            assert time.monotonic() < deadline, "runyard serve did not become ready"
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "runyard", *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in out.stderr, out.stderr
    return out


def ok_json(*args: str, cwd: Path) -> object:
    out = cli(*args, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_served_app_from_beside_the_config(server: str, elsewhere: Path) -> None:
    apps = ok_json("apps", "ls", "--base-url", server, cwd=elsewhere)
    assert isinstance(apps, list) and "acme/hello" in [a["name"] for a in apps]
    run = cli("run", "acme/hello", "--input", "name=Ada", "--base-url", server, cwd=elsewhere)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"greeting": "Hello, Ada!"}


def test_embedded_from_another_folder(project: Path, elsewhere: Path) -> None:
    run = cli("run", "acme/hello", "-i", "name=Bo", "--config", str(project / "runyard.toml"), cwd=elsewhere)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"greeting": "Hello, Bo!"}


def test_tasks_tables_keep_whole_ids(server: str, elsewhere: Path) -> None:
    url = ("--base-url", server)
    assert cli("run", "acme/hello", "-i", "name=Cy", *url, cwd=elsewhere).returncode == 0
    tasks = ok_json("tasks", "ls", "--app", "acme/hello", *url, cwd=elsewhere)
    assert isinstance(tasks, list) and tasks and all(UUID.fullmatch(t["id"]) for t in tasks)
    table = cli("tasks", "ls", "--app", "acme/hello", *url, cwd=elsewhere)  # COLUMNS=80
    assert table.returncode == 0
    assert {t["id"] for t in tasks} <= set(UUID.findall(table.stdout))
    shown = ok_json("tasks", "get", tasks[0]["id"], *url, cwd=elsewhere)
    assert isinstance(shown, dict) and shown["id"] == tasks[0]["id"] and shown["status"] == "completed"


def test_models_status_usage_and_inferences(server: str, elsewhere: Path) -> None:
    url = ("--base-url", server)
    for text in ("one", "two", "three"):
        chat = cli("chat", text, "--model", "dummy::echo", *url, cwd=elsewhere)
        assert chat.returncode == 0 and text in chat.stdout, chat.stderr

    models = ok_json("models", *url, cwd=elsewhere)
    assert isinstance(models, list) and all({"id", "owned_by"} <= set(m) for m in models)
    assert "model" in cli("models", *url, cwd=elsewhere).stdout
    status = ok_json("status", *url, cwd=elsewhere)
    assert isinstance(status, dict) and status["status"] == "ok" and "recorder" in status

    page = ok_json("inferences", "ls", "--model", "dummy::echo", "--limit", "2", *url, cwd=elsewhere)
    assert isinstance(page, dict) and len(page["data"]) == 2 and page["has_more"] is True
    rest = ok_json("inferences", "ls", "--model", "dummy::echo", "--after", page["next_cursor"], *url, cwd=elsewhere)
    assert isinstance(rest, dict)
    ids = [row["id"] for row in page["data"] + rest["data"]]
    assert len(ids) == len(set(ids)) >= 3 and ids == sorted(ids, reverse=True)
    none = ok_json("inferences", "ls", "--model", "no-such-model", *url, cwd=elsewhere)
    assert isinstance(none, dict) and none["data"] == [] and none["next_cursor"] is None
    one = ok_json("inferences", "get", ids[0], *url, cwd=elsewhere)
    assert isinstance(one, dict) and one["id"] == ids[0] and one["model"] == "dummy::echo" and "feedback" in one
    table = cli("inferences", "ls", "--limit", "2", *url, cwd=elsewhere)
    assert table.returncode == 0 and ids[0] in table.stdout and "more: --after" in table.stdout
    missing = cli("inferences", "get", "0190f0f0-0000-7000-8000-000000000000", *url, cwd=elsewhere)
    assert missing.returncode == 1 and "inference_not_found" in missing.stderr
    bad = cli("inferences", "ls", "--after", "nope", *url, cwd=elsewhere)
    assert bad.returncode == 1 and "invalid_cursor" in bad.stderr

    usage = ok_json("usage", "--group-by", "model", *url, cwd=elsewhere)
    assert isinstance(usage, dict)
    by_model = {row["model"]: row for row in usage["data"]}
    assert by_model["dummy::echo"]["requests"] >= 3
    table = cli("usage", "--group-by", "model", *url, cwd=elsewhere)
    assert table.returncode == 0 and "dummy::echo" in table.stdout and "total" in table.stdout


def test_workflow_listings(server: str, elsewhere: Path) -> None:
    url = ("--base-url", server)
    flow = elsewhere / "flow.yaml"
    flow.write_text(
        "name: clicmd/flow\nblocks:\n  - {id: start, kind: input, inputs: {text: string}}\n"
        '  - {id: out, kind: output, outputs: {t: "{{ start.text }}"}}\n'
    )
    assert cli("workflows", "push", str(flow), *url, cwd=elsewhere).returncode == 0
    assert cli("workflows", "publish", "clicmd/flow", *url, cwd=elsewhere).returncode == 0
    listed = ok_json("workflows", "ls", *url, cwd=elsewhere)
    assert isinstance(listed, list) and "clicmd/flow" in [w["name"] for w in listed]
    status = ok_json("workflows", "status", "clicmd/flow", *url, cwd=elsewhere)
    assert isinstance(status, dict) and status["deployed_version"] == 1
    valid = cli("workflows", "validate", "clicmd/flow@main", *url, cwd=elsewhere)
    assert valid.returncode == 0 and json.loads(valid.stdout)["valid"] is True
