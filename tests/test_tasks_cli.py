"""The CLI against a real server: ``runyard run`` (progress from the event stream), ``apps ls``,
``tasks ls|get|cancel``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.gateway import GatewayProcess
from support.tasks_e2e import app_env


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **app_env(), "COLUMNS": "200"}
    env.pop("RUNYARD_BASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "runyard", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_run_apps_and_tasks(tasks_server: GatewayProcess, tmp_path: Path) -> None:
    url = ["--base-url", tasks_server.url]
    out = cli("run", "tests/steps", "--input", "steps=3", "--input", "delay=0.01", *url)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"steps": 3}
    assert [line for line in out.stderr.splitlines() if line.startswith("step ")] == [
        "step 1 of 3",
        "step 2 of 3",
        "step 3 of 3",
    ]
    assert "100%" in out.stderr

    source = tmp_path / "in.bin"
    source.write_bytes(b"\x00\x01")
    files = cli("run", "tests/invert", "--input", f"image=@{source}", *url)
    assert files.returncode == 0, files.stderr
    assert json.loads(files.stdout).startswith("runyard://files/")

    failed = cli("run", "tests/fails", "--input", "why=cli", *url)
    assert failed.returncode == 1 and "boom: cli" in failed.stderr
    missing = cli("run", "tests/nope", *url)
    assert missing.returncode == 1 and "app_not_found" in missing.stderr

    apps = cli("apps", "ls", *url)
    assert apps.returncode == 0 and "tests/echo" in apps.stdout and "1.10.0" in apps.stdout

    queued = cli("run", "tests/slow", "--input", "seconds=30", "--no-wait", *url)
    task_id = queued.stdout.strip()
    assert queued.returncode == 0 and len(task_id) == 36
    shown = cli("tasks", "get", task_id, *url)
    assert json.loads(shown.stdout)["id"] == task_id
    cancelled = cli("tasks", "cancel", task_id, *url)
    assert cancelled.returncode == 0 and cancelled.stdout.startswith(task_id)
    listing = cli("tasks", "ls", "--app", "tests/steps", *url)
    assert listing.returncode == 0 and "tests/steps@1.0.0" in listing.stdout and "completed" in listing.stdout
