"""Durability: tasks survive worker deaths. The server runs with ``--no-worker``; tasks are run by
``runyard worker`` subprocesses sharing its SQLite store. Leases are 1 s so this stays quick."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard import Client, TaskFailedError
from runyard.client.tasks import Task
from support.gateway import GatewayProcess
from support.tasks_e2e import WorkerProcess, app_env, tasks_toml


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    root = tmp_path_factory.mktemp("durable")
    config = root / "runyard.toml"
    config.write_text(tasks_toml(root, lease_s=1.0, max_attempts=2))
    server = GatewayProcess(config, env=app_env(), args=["--no-worker"]).start()
    try:
        yield server, config
    finally:
        server.stop()


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_no_worker_means_task_stays_queued(durable: tuple[GatewayProcess, Path]) -> None:
    server, _ = durable
    with Client(base_url=server.url, max_retries=0) as client:
        task = client.run("tests/echo", {"text": "x"}, wait=False)
        assert isinstance(task, Task)
        time.sleep(0.5)
        assert client.tasks.get(task.id).status == "queued"
        client.tasks.cancel(task.id)


def test_killed_worker_task_is_rerun_by_another(durable: tuple[GatewayProcess, Path], tmp_path: Path) -> None:
    server, config = durable
    marker = tmp_path / "runs.txt"
    first = WorkerProcess(config).start()
    second: WorkerProcess | None = None
    try:
        with Client(base_url=server.url, max_retries=0) as client:
            task = client.run("tests/nap", {"seconds": 1.5, "marker": str(marker)}, wait=False)
            assert isinstance(task, Task)
            wait_until(lambda: marker.exists() and marker.read_text().strip(), 20, "the first worker to start the task")
            assert client.tasks.get(task.id).status == "processing"
            first.kill()  # SIGKILL mid-task: no cleanup, the lease just stops being renewed
            second = WorkerProcess(config).start()
            task.wait(polling_interval=0.1, timeout=30)
            assert task.status == "completed"
            assert task.output == {"pid": second.pid, "attempt": 2}
            runs = [line.split() for line in marker.read_text().splitlines()]
            assert runs == [[str(first.pid), "1"], [str(second.pid), "2"]]
            events = list(client.tasks.stream(task.id))
            statuses = [e.status for e in events if e.type == "status"]
            assert statuses == ["queued", "processing", "queued", "processing", "completed"]
    finally:
        first.kill()
        if second is not None:
            second.stop()


def test_task_over_max_attempts_fails_with_reason(durable: tuple[GatewayProcess, Path]) -> None:
    server, config = durable
    workers: list[WorkerProcess] = []
    try:
        with Client(base_url=server.url, max_retries=0) as client:
            task = client.run("tests/crash", {}, wait=False)
            assert isinstance(task, Task)
            deadline = time.monotonic() + 40
            while client.tasks.get(task.id).status not in ("failed", "completed") and time.monotonic() < deadline:
                if not workers or workers[-1].proc is None or workers[-1].proc.poll() is not None:
                    workers.append(WorkerProcess(config).start())  # each one dies running the task
                time.sleep(0.1)
            with pytest.raises(TaskFailedError) as caught:
                task.wait(polling_interval=0.1, timeout=1)
            assert caught.value.code == "max_attempts_exceeded"
            assert "lease expired" in caught.value.message
            assert task.attempts == 2
            assert client.tasks.list(status="processing").data == [], "no task is left processing"
    finally:
        for w in workers:
            w.kill()
