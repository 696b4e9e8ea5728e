"""The workflow systems' doc examples (``examples/speedpix/``, ``examples/sim/``) run as scripts
against ``runyard serve`` with the real ``speedpix`` and ``simstudio-sdk`` clients.

Each folder holds the doc's examples as written (a ``print`` added where the doc prints nothing),
its ``runyard.toml``, the workflows (``workflows/*.yaml``, pushed and published first, as a user
would with ``runyard workflows push/publish``) and the apps their function blocks call. The
scripts read their endpoint and keys from the environment, as the clients allow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard import Client
from support.gateway import GatewayProcess

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ADMIN_KEY = {"sim": "sim-example-key"}  # the demo key whose hash examples/sim/runyard.toml holds

# script -> lines its output must contain
SPEEDPIX = {
    "quickstart.py": ["saved output.png: True"],
    "async_run.py": ["saved async_result.png, text: 一幅美丽的山水画"],
    "global_run.py": ["saved global_output.png, text: 一幅美丽的山水画"],
    "resources.py": ["shared: 一个美丽的风景 | dedicated: 一个美丽的风景 | prediction: waiting"],
    "dict_forms.py": ["方式1: test", "方式2: test /path/to/ref.png"],
    "upload.py": ["处理后的图片已保存"],
}
SIM = {
    "quickstart.py": ["Workflow executed successfully: WorkflowExecutionResult(success=True"],
    "error_handling.py": ["success: True", "Invalid API key"],
    "context_manager.py": ["Result: WorkflowExecutionResult(success=True"],
    "batch.py": [
        "Workflow workflow-1: Success",
        "output: {'handled': 'analysis:sample1'}",
        "Workflow workflow-2: Success",
    ],
    "usage.py": ["  Limit: 60", "Limit: $10.00", "Plan: pro", "Usage: 0.0%"],
    "environment.py": ["deployed: True"],
    "stream_raw.py": ['"chunk": "Generate', '"event": "done"', "Execution complete: {'duration':"],
}


def _serve(system: str, tmp: Path) -> Iterator[tuple[GatewayProcess, Path]]:
    folder = tmp / system
    shutil.copytree(EXAMPLES / system, folder)
    server = GatewayProcess(folder / "runyard.toml", env={"RUNYARD_DATA": str(folder)}).start()
    try:
        with Client(base_url=server.url, api_key=ADMIN_KEY.get(system), max_retries=0) as admin:
            for definition in sorted((folder / "workflows").glob("*.yaml")):
                name = admin.workflows.save(definition.read_text())["name"]
                admin.workflows.publish(name)
        yield server, folder
    finally:
        server.stop()


@pytest.fixture(scope="module")
def speedpix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    pytest.importorskip("speedpix")
    yield from _serve("speedpix", tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="module")
def sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    pytest.importorskip("simstudio")
    yield from _serve("sim", tmp_path_factory.mktemp("examples"))


def _run(script: Path, cwd: Path, env: dict[str, str]) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNYARD_", "SPEEDPIX_", "SIM_"))}
    out = subprocess.run(
        [sys.executable, str(script)], env={**full_env, **env}, capture_output=True, text=True, timeout=90, cwd=cwd
    )
    assert out.returncode == 0, f"{script.name} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    for failure in ("发生错误", "Error:", "Error checking", "failed:"):  # the docs' catch-alls
        assert failure not in out.stdout, out.stdout
    return out.stdout


def test_every_example_is_listed() -> None:
    assert {p.name for p in (EXAMPLES / "speedpix").glob("*.py")} - {"studio.py"} == set(SPEEDPIX)
    assert {p.name for p in (EXAMPLES / "sim").glob("*.py")} == set(SIM)


@pytest.mark.parametrize("script", sorted(SPEEDPIX))
def test_speedpix_example(script: str, speedpix_server: tuple[GatewayProcess, Path]) -> None:
    server, folder = speedpix_server
    env = {
        "SPEEDPIX_APP_KEY": "your-app-key",
        "SPEEDPIX_APP_SECRET": "your-app-secret",
        "SPEEDPIX_ENDPOINT": server.url,
    }
    out = _run(folder / script, folder, env)
    for expected in SPEEDPIX[script]:
        assert expected in out, out


@pytest.mark.parametrize("script", sorted(SIM))
def test_sim_example(script: str, sim_server: tuple[GatewayProcess, Path]) -> None:
    server, folder = sim_server
    out = _run(folder / script, folder, {"SIM_API_KEY": "sim-example-key", "SIM_BASE_URL": server.url})
    for expected in SIM[script]:
        assert expected in out, out
