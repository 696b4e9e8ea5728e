"""What Sim's doc promises, against ``runyard serve``: its error vocabulary through the real
``simstudio-sdk`` client (``UNAUTHORIZED``, ``INVALID_JSON``, 402 ``USAGE_LIMIT_EXCEEDED``, 429
``RATE_LIMIT_EXCEEDED``, ``EXECUTION_ERROR``; the legacy endpoints' ``{"error", "code"}`` body), the
raw ``POST /api/workflows/{id}/execute`` route of its streaming example (driven with ``requests``
as the doc does), and ``estimatedDuration`` in whole milliseconds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from runyard import Client
from runyard.workflows import Workflow
from support.gateway import GatewayProcess
from support.openai_mock import MockOpenAI
from support.sim import add_key, sim_gateway

simstudio = pytest.importorskip("simstudio")

ADMIN_KEY = "ry_sim_doc_admin"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, _mock_openai_server: MockOpenAI) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("sim-doc")
    with sim_gateway(root, ADMIN_KEY, _mock_openai_server.url, window_s=60, concurrency=4) as gateway:
        with Client(base_url=gateway.url, api_key=ADMIN_KEY, max_retries=0) as admin:
            admin.workflows.save(
                Workflow("story")
                .input(message="string")
                .llm("agent1", model="gpt", prompt="{{ start.message }}")
                .output(story="{{ agent1.content }}")
                .to_dict()
            )
            admin.workflows.publish("story")
            admin.workflows.save(Workflow("broken").input(x="integer").function("f", "apps.flows:boom").to_dict())
            admin.workflows.publish("broken")
        yield gateway


def _sim(server: GatewayProcess, key: str = ADMIN_KEY) -> simstudio.SimStudioClient:
    return simstudio.SimStudioClient(api_key=key, base_url=server.url)


def test_bad_key_is_unauthorized_on_every_sim_endpoint(server: GatewayProcess) -> None:
    with _sim(server, "wrong-key") as sim:
        with pytest.raises(simstudio.SimStudioError) as v2:
            sim.execute_workflow("story", {"message": "x"})
        assert v2.value.code == "UNAUTHORIZED" and v2.value.status == 401
        with pytest.raises(simstudio.SimStudioError) as legacy:
            sim.get_job_status("some-task")
        assert legacy.value.code == "UNAUTHORIZED" and legacy.value.status == 401
        assert sim.validate_workflow("story") is False
    raw = requests.get(f"{server.url}/api/workflows/story/status", headers={"X-API-Key": "wrong"}, timeout=10)
    assert raw.status_code == 401 and raw.json()["code"] == "UNAUTHORIZED"
    assert isinstance(raw.json()["error"], str)  # the legacy shape: {"error": "<message>", "code": ...}
    other = requests.get(f"{server.url}/v1/workflows", headers={"X-API-Key": "wrong"}, timeout=10)
    assert other.json()["error"]["code"] != "UNAUTHORIZED"  # Runyard's own routes keep their vocabulary


def test_bad_body_is_invalid_json(server: GatewayProcess) -> None:
    headers = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/json"}
    v2 = requests.post(f"{server.url}/api/v2/workflows/story/execute", data=b"{nope", headers=headers, timeout=10)
    assert v2.status_code == 400 and v2.json()["error"]["code"] == "INVALID_JSON"
    raw = requests.post(f"{server.url}/api/workflows/story/execute", data=b"[1]", headers=headers, timeout=10)
    assert raw.status_code == 400 and raw.json()["code"] == "INVALID_JSON"
    with _sim(server) as sim, pytest.raises(simstudio.SimStudioError) as info:
        sim.execute_workflow("story", {"message": "x"}, selected_outputs="agent1.content")  # type: ignore[arg-type]
    assert info.value.code == "INVALID_JSON"


def test_spent_usage_limit_is_402_and_not_retried(server: GatewayProcess) -> None:
    key = add_key(server, spend_limit=0.0)
    with _sim(server, key) as sim:
        started = time.monotonic()
        with pytest.raises(simstudio.SimStudioError) as info:
            sim.execute_with_retry("story", {"message": "x"}, max_retries=3, initial_delay=10.0)
        assert info.value.code == "USAGE_LIMIT_EXCEEDED" and info.value.status == 402
        assert time.monotonic() - started < 7.5  # not retried (a retry would sleep 10 s +-25% first)
    raw = requests.post(f"{server.url}/api/workflows/story/execute", json={"message": "x"}, headers={"X-API-Key": key})
    assert raw.status_code == 402 and raw.json() == {"error": raw.json()["error"], "code": "USAGE_LIMIT_EXCEEDED"}


def test_rate_limit_is_429_rate_limit_exceeded(server: GatewayProcess) -> None:
    key = add_key(server, rpm_sync=1)
    with _sim(server, key) as sim:
        assert sim.execute_workflow("story", {"message": "one"}).success is True
        with pytest.raises(simstudio.SimStudioError) as info:
            sim.execute_workflow("story", {"message": "two"})
        assert info.value.code == "RATE_LIMIT_EXCEEDED" and info.value.status == 429
    raw = requests.post(f"{server.url}/api/workflows/story/execute", json={"message": "x"}, headers={"X-API-Key": key})
    assert raw.status_code == 429 and raw.json()["code"] == "RATE_LIMIT_EXCEEDED" and raw.headers["Retry-After"]


def test_failed_run_reports_execution_error(server: GatewayProcess) -> None:
    with _sim(server) as sim:
        result = sim.execute_workflow("broken", {"x": 1})
    assert result.success is False and "kaboom" in str(result.error)
    with _sim(server) as sim:
        queued = sim.execute_workflow("broken", {"x": 1}, async_execution=True)
        run = _poll(lambda: sim.get_workflow_run("broken", queued.run_id))
    assert run["status"] == "failed" and run["error"]["code"] == "EXECUTION_ERROR"


def _poll(fetch: object) -> dict[str, object]:
    assert callable(fetch)
    deadline = time.monotonic() + 20
    while True:
        run = fetch()
        if run["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return dict(run)
        time.sleep(0.05)


def test_raw_route_streams_chunks_done_and_done_marker(server: GatewayProcess) -> None:
    """The doc's Flask example, verbatim in its request and its parsing."""
    response = requests.post(
        f"{server.url}/api/workflows/story/execute",
        headers={"Content-Type": "application/json", "X-API-Key": ADMIN_KEY},
        json={"message": "Generate a story", "stream": True, "selectedOutputs": ["agent1.content"]},
        stream=True,
        timeout=30,
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    chunks, done, saw_marker = [], None, False
    for line in response.iter_lines():
        if line and line.decode("utf-8").startswith("data: "):
            data = line.decode("utf-8")[6:]
            if data == "[DONE]":
                saw_marker = True
                break
            parsed = json.loads(data)
            if "chunk" in parsed:
                assert parsed["blockId"] == "agent1"
                chunks.append(parsed["chunk"])
            elif parsed.get("event") == "done":
                done = parsed
    assert saw_marker and len(chunks) > 1
    assert "".join(chunks) == "echo: Generate a story"
    assert done is not None and done["success"] is True and isinstance(done["metadata"]["duration"], int | float)


def test_raw_route_sync_and_async(server: GatewayProcess) -> None:
    headers = {"X-API-Key": ADMIN_KEY}
    sync = requests.post(f"{server.url}/api/workflows/story/execute", json={"message": "hi"}, headers=headers)
    assert sync.status_code == 200 and sync.json()["success"] is True
    assert sync.json()["output"] == {"story": "echo: hi"}
    queued = requests.post(
        f"{server.url}/api/workflows/story/execute",
        json={"message": "later"},
        headers={**headers, "X-Execution-Mode": "async"},
    )
    assert queued.status_code == 202 and queued.json()["links"]["status"] == f"/api/jobs/{queued.json()['taskId']}"
    with _sim(server) as sim:
        job = _poll(lambda: sim.get_job_status(queued.json()["taskId"]))
        assert job["status"] == "completed" and job["output"] == {"story": "echo: later"}
        missing = requests.post(f"{server.url}/api/workflows/nope/execute", json={}, headers=headers)
        assert missing.status_code == 404 and isinstance(missing.json()["error"], str)


def test_estimated_duration_is_whole_milliseconds(server: GatewayProcess) -> None:
    with _sim(server) as sim:
        for _ in range(2):
            assert sim.execute_workflow("story", {"message": "t"}).success is True
        queued = sim.execute_workflow("story", {"message": "e"}, async_execution=True)
        status = sim.get_job_status(queued.run_id)
    assert type(status["estimatedDuration"]) is int and status["estimatedDuration"] >= 0
