"""The CLI meets a newcomer's mistakes with one line and a non-zero exit, never a traceback.

Every case runs the real ``python -m runyard`` in a fresh folder; gateways are real processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runyard import Client
from support.gateway import GatewayProcess, free_port
from support.tasks_e2e import app_env

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **app_env(), "COLUMNS": "80"}
    env.pop("RUNYARD_BASE_URL", None)
    env.pop("RUNYARD_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "runyard", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def one_line_error(out: subprocess.CompletedProcess[str], *needles: str, code: int = 1) -> str:
    """The run failed with ``code`` and a single ``runyard: ...`` line holding every needle."""
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runyard: "), out.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def config_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, ``runyard: <file>: invalid configuration:`` then one indented line per bad key."""
    assert "Traceback" not in out.stderr and out.returncode == 2, (out.returncode, out.stderr)
    first, *problems = out.stderr.strip().splitlines()
    assert first.startswith("runyard: ") and all(line.startswith("  ") for line in problems), out.stderr
    for needle in needles:
        assert needle in out.stderr


def usage_error(out: subprocess.CompletedProcess[str], usage: str, *needles: str) -> None:
    """An argparse error: exit 2, the usage of the subcommand given (``usage``), the error line."""
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stderr.startswith(f"usage: {usage} "), out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{usage}: error: ")
    for needle in needles:
        assert needle in last, (needle, last)


def test_flags_and_usage(tmp_path: Path) -> None:
    version = cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip().startswith("runyard 0.")
    usage_error(cli("serve", "--log-level", "verbose", cwd=tmp_path), "runyard serve", "--log-level", "verbose")
    usage_error(cli("tasks", "ls", "--bogus", cwd=tmp_path), "runyard tasks ls", "unrecognized arguments: --bogus")
    usage_error(cli("keys", "create", cwd=tmp_path), "runyard keys create", "--name")
    group = cli("tasks", cwd=tmp_path)  # a group without its command: the group's help
    assert group.returncode == 2 and "usage: runyard tasks" in group.stderr and "cancel" in group.stderr
    assert not (tmp_path / ".runyard").exists()


def test_missing_files_and_bad_input(tmp_path: Path) -> None:
    one_line_error(cli("workflows", "push", "missing.yaml", cwd=tmp_path), "missing.yaml", "no such file")
    one_line_error(cli("run", "runyard/chat", "--input", "image=@missing.png", cwd=tmp_path), "missing.png")
    one_line_error(cli("run", "runyard/chat", "--json", "{nope", cwd=tmp_path), "--json", code=2)
    one_line_error(cli("run", "runyard/chat", "--input", "novalue", cwd=tmp_path), "KEY=VALUE", code=2)
    one_line_error(cli("serve", "--config", "nope.toml", cwd=tmp_path), "nope.toml", code=2)
    (tmp_path / "bad.toml").write_text("[server]\nport = 'x'\n")
    config_error(cli("serve", "--config", "bad.toml", cwd=tmp_path), "bad.toml", "server.port")
    one_line_error(cli("workflows", "run", "acme/x", "--input", "[1]", cwd=tmp_path), "JSON object", code=2)
    assert not (tmp_path / ".runyard").exists()


def test_postgres_url_without_its_driver(tmp_path: Path) -> None:
    (tmp_path / "pg.toml").write_text('[storage]\nurl = "postgresql://root@127.0.0.1:5432/test"\n')
    config_error(cli("keys", "list", "--config", "pg.toml", cwd=tmp_path), "storage.url", "postgresql+asyncpg://")


def test_an_apps_module_that_does_not_import(tmp_path: Path) -> None:
    (tmp_path / "runyard.toml").write_text(
        '[apps]\nmodules = ["not_here"]\n[storage]\nurl = "sqlite+aiosqlite:///db"\n'
    )
    line = one_line_error(cli("apps", "ls", cwd=tmp_path), "not_here", str(tmp_path), code=2)
    assert "[apps] modules" in line
    one_line_error(cli("serve", "--port", "0", cwd=tmp_path), "not_here", code=2)


@pytest.mark.skipif(
    bool(os.environ.get("RUNYARD_TEST_POSTGRES_URL")),
    reason="a SQLite file not made yet: the scale-out run puts every store on Postgres, which exists",
)
def test_keys_list_creates_nothing(tmp_path: Path) -> None:
    listed = cli("keys", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "does not exist yet" in listed.stderr
    assert not (tmp_path / ".runyard").exists()
    one_line_error(cli("keys", "revoke", "nope", cwd=tmp_path), "no key nope")
    assert not (tmp_path / ".runyard").exists()


def test_unreachable_server_names_three_ways_forward(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("tasks", "ls"), ("models",), ("chat", "hi")):
        line = one_line_error(cli(*args, "--base-url", url, cwd=tmp_path), "cannot reach the gateway", url)
        assert "runyard serve" in line and "RUNYARD_BASE_URL" in line and "embedded" in line


def test_sdk_names_the_ways_forward_too() -> None:
    from runyard.errors import ConnectionError

    with Client(base_url=f"http://127.0.0.1:{free_port()}", max_retries=0) as client:
        with pytest.raises(ConnectionError) as caught:
            client.ai.chat("hi", model="dummy::echo")
    message = str(caught.value)
    assert "runyard serve" in message and "RUNYARD_BASE_URL" in message and "Client.embedded()" in message


def test_a_closed_pipe_is_quiet(tasks_server: GatewayProcess, tmp_path: Path) -> None:
    """``runyard tasks get ... | head``: the reader is gone before the CLI writes."""
    with Client(base_url=tasks_server.url) as client:
        task = client.run("tests/echo", {"text": "x" * 200_000})
    env = {**os.environ, **app_env()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runyard", "tasks", "get", task.id, "--base-url", tasks_server.url],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `head` does once it has its lines
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""


def test_failed_workflow_run_exits_non_zero(tasks_server: GatewayProcess, tmp_path: Path) -> None:
    wf = tmp_path / "greet.yaml"
    wf.write_text(
        "name: clitest/greet\nblocks:\n"
        "  - {id: start, kind: input, inputs: {text: string, scores: array}}\n"
        '  - {id: out, kind: output, outputs: {n: "{{ start.scores }}"}}\n'
    )
    url = ("--base-url", tasks_server.url)
    assert cli("workflows", "push", str(wf), *url, cwd=tmp_path).returncode == 0
    assert cli("workflows", "publish", "clitest/greet", *url, cwd=tmp_path).returncode == 0
    failed = cli("workflows", "run", "clitest/greet", "--input", '{"text": "hi"}', *url, cwd=tmp_path)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert json.loads(failed.stdout)["success"] is False
    assert failed.stderr.startswith("runyard: workflow clitest/greet failed: ") and "scores" in failed.stderr
    ok = cli("workflows", "run", "clitest/greet", "--input", '{"text": "hi", "scores": [1]}', *url, cwd=tmp_path)
    assert ok.returncode == 0 and json.loads(ok.stdout)["output"] == {"n": [1]}


@pytest.mark.parametrize("cancel", [False, True], ids=["keeps-running", "cancel-on-interrupt"])
def test_ctrl_c_in_run_names_the_task(tasks_server: GatewayProcess, tmp_path: Path, cancel: bool) -> None:
    env = {**os.environ, **app_env()}
    args = ["run", "tests/slow", "--input", "seconds=30", "--base-url", tasks_server.url]
    if cancel:
        args.append("--cancel-on-interrupt")
    with Client(base_url=tasks_server.url) as client:
        before = {t["id"] for t in client.tasks.list(app="tests/slow", limit=200).data}
        proc = subprocess.Popen(
            [sys.executable, "-m", "runyard", *args],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            # a suite started in the background (`cmd &`) ignores SIGINT, and children inherit that
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 30
        running = None
        while running is None and time.monotonic() < deadline:
            fresh = [t for t in client.tasks.list(app="tests/slow", limit=200).data if t["id"] not in before]
            running = next((t for t in fresh if t["status"] == "processing"), None)
            time.sleep(0.1)
        assert running is not None, "the run never started"
        time.sleep(0.5)  # the CLI is following its event stream now
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "Traceback" not in stderr, stderr
        line = stderr.strip().splitlines()[-1]
        assert line.startswith("runyard: interrupted: task ") and running["id"] in line
        if cancel:
            assert "cancel requested" in line
            end = time.monotonic() + 30
            while client.tasks.get(running["id"]).status != "cancelled" and time.monotonic() < end:
                time.sleep(0.1)
            assert client.tasks.get(running["id"]).status == "cancelled"
        else:
            assert f"runyard tasks cancel {running['id']}" in line and "--cancel-on-interrupt" in line
            assert client.tasks.get(running["id"]).status == "processing"
            client.tasks.cancel(running["id"])


def test_an_unclosed_embedded_client_exits_quietly(tmp_path: Path) -> None:
    script = (
        "from runyard import Client\n"
        "client = Client.embedded()\n"
        "print(client.ai.chat('hi', model='dummy::echo').content)\n"
        "client.run('runyard/chat', {'model': 'dummy::echo', 'prompt': 'x'}, wait=False)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "echo: hi", out.stderr
    assert out.stderr == "", out.stderr
