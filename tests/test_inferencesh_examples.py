"""The inference.sh SDK doc's examples (seed 000, ``examples/inferencesh/``) run as scripts with the
real ``inferencesh`` client against ``runyard serve`` (the same pattern as test_seed_examples.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.gateway import GatewayProcess
from support.media_upstream import ThreadedUpstream

pytest.importorskip("inferencesh")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "inferencesh"

# script -> lines its output must contain ("a raccoon": the loopback upstream's chat answer)
INFERENCESH = {
    "quickstart.py": ["runyard://files/"],
    "run_basic.py": ["10\n", "runyard://files/"],
    "run_no_wait.py": ["Task ID: ", "later: {'video': 'a video of Drone flying over mountains'}"],
    "run_stream.py": ["Status: 10", "rendering 4/4"],
    "files_auto_upload.py": ["'kind': 'png'"],
    "files_manual_upload.py": ["custom_name.png {", "'kind': 'png'"],
    "sessions.py": ["{'action': 'process', 'calls': 2}"],
    "agent_template.py": ["a raccoon", "2 messages: a raccoon"],
    "agent_custom.py": ["a raccoon"],
    "tool_builders.py": ["a raccoon"],
    "streaming.py": ["a raccoon"],
    "attachments.py": ["a raccoon"],
    "skills.py": ["a raccoon"],
    "async_example.py": ["runyard://files/", "a raccoon"],
    "errors.py": ["Missing requirements:", "  - secret: SLACK_TOKEN"],
    "approval.py": ["idle | a raccoon"],
}
NOT_DOC_EXAMPLES = {"infsh_apps.py", "create_templates.py"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    upstream = ThreadedUpstream().start()
    folder = tmp_path_factory.mktemp("examples") / "inferencesh"
    shutil.copytree(EXAMPLES, folder)
    env = {"OPENAI_BASE_URL": upstream.url + "/v1", "OPENAI_API_KEY": "sk-example", "RUNYARD_DATA": str(folder)}
    server = GatewayProcess(folder / "runyard.toml", env={**env, "ANTHROPIC_API_KEY": ""}).start()
    try:
        script_env = {
            "INFERENCE_API_KEY": "inf_example",
            "INFERENCE_BASE_URL": server.url + "/inferencesh",
            "RUNYARD_BASE_URL": server.url,
        }
        assert "created my-team/support-agent@1" in _run(folder / "create_templates.py", folder, script_env)
        yield folder, script_env
    finally:
        server.stop()
        upstream.stop()


def _run(script: Path, folder: Path, env: dict[str, str]) -> str:
    text = script.read_text().replace("/path/to/image.png", str(folder / "image.png"))
    copy = folder / f"run_{script.name}"
    copy.write_text(text)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNYARD_", "INFERENCE_"))}
    out = subprocess.run(
        [sys.executable, str(copy)], env={**full_env, **env}, capture_output=True, text=True, timeout=90, cwd=folder
    )
    assert out.returncode == 0, f"{script.name} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_every_example_is_listed() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(INFERENCESH) | NOT_DOC_EXAMPLES


@pytest.mark.timeout(120)
@pytest.mark.parametrize("script", sorted(INFERENCESH))
def test_inferencesh_example(script: str, served: tuple[Path, dict[str, str]]) -> None:
    folder, env = served
    out = _run(folder / script, folder, env)
    for expected in INFERENCESH[script]:
        assert expected in out, out
