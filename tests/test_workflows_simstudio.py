"""The real ``simstudio-sdk`` (unchanged, from PyPI) against ``runyard serve``: execute sync, async +
run polling, stream (one JSON body), validate/status, usage limits, 401 on a bad key, and
``execute_with_retry`` backing off a 429 and succeeding."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from runyard import Client
from runyard.workflows import Workflow
from support.gateway import GatewayProcess
from support.openai_mock import MockOpenAI
from support.sim import add_key, sim_gateway

simstudio = pytest.importorskip("simstudio")

ADMIN_KEY = "ry_wf_admin_key"


@pytest.fixture(scope="module")
def sim_server(tmp_path_factory: pytest.TempPathFactory, _mock_openai_server: MockOpenAI) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("wf-sim")
    with sim_gateway(root, ADMIN_KEY, _mock_openai_server.url, window_s=2, concurrency=8) as server:
        with Client(base_url=server.url, api_key=ADMIN_KEY, max_retries=0) as client:
            client.workflows.save(
                Workflow("sim/hello")
                .input(message="string")
                .function("shout", "apps.flows:shout", text="{{ start.message }}")
                .llm("agent1", model="gpt", prompt="{{ shout.text }} please")
                .output(answer="{{ shout.text }}", reply="{{ agent1.content }}")
                .to_dict()
            )
            client.workflows.publish("sim/hello")
            client.workflows.save(Workflow("sim/draft").function("f", "apps.flows:square", x=2).to_dict())
        yield server


def test_sim_sdk_sync_async_stream_status(sim_server: GatewayProcess) -> None:
    sim = simstudio.SimStudioClient(api_key=ADMIN_KEY, base_url=sim_server.url)
    try:
        result = sim.execute_workflow("sim/hello", {"message": "hi"})
        assert result.success is True
        assert result.output == {"answer": "HI", "reply": "echo: HI please"}
        assert result.metadata["duration"] is not None

        queued = sim.execute_workflow("sim/hello", {"message": "yo"}, async_execution=True)
        assert isinstance(queued, simstudio.AsyncExecutionResult)
        assert queued.status_url.endswith(f"/api/v2/workflows/sim/hello/runs/{queued.run_id}")
        deadline = time.monotonic() + 20
        while True:
            run = sim.get_workflow_run("sim/hello", queued.run_id, include_output=True)
            if run["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert run["status"] == "completed" and run["output"]["answer"] == "YO"
        job = sim.get_job_status(queued.run_id)
        assert job["status"] == "completed" and job["output"]["answer"] == "YO"

        streamed = sim.execute_workflow("sim/hello", {"message": "s"}, stream=True, selected_outputs=["agent1.content"])
        assert streamed.success is True and streamed.output == {"agent1.content": "echo: S please"}

        assert sim.validate_workflow("sim/hello") is True
        assert sim.validate_workflow("sim/draft") is False  # saved, never deployed
        status = sim.get_workflow_status("sim/hello")
        assert status.is_deployed is True and status.deployed_at and status.needs_redeployment is False
        limits = sim.get_usage_limits()
        assert limits.success is True and "sync" in limits.rate_limit

        with pytest.raises(simstudio.SimStudioError) as undeployed:
            sim.execute_workflow("sim/draft", {})
        assert undeployed.value.code == "workflow_not_deployed"
    finally:
        sim.close()

    bad = simstudio.SimStudioClient(api_key="wrong-key", base_url=sim_server.url)
    try:
        with pytest.raises(simstudio.SimStudioError) as info:
            bad.execute_workflow("sim/hello", {"message": "x"})
        assert info.value.status == 401
    finally:
        bad.close()


def test_sim_sdk_retries_after_429(sim_server: GatewayProcess) -> None:
    key = add_key(sim_server, rpm_sync=1)
    sim = simstudio.SimStudioClient(api_key=key, base_url=sim_server.url)
    try:
        assert sim.execute_workflow("sim/hello", {"message": "one"}).success is True
        with pytest.raises(simstudio.SimStudioError) as limited:
            sim.execute_workflow("sim/hello", {"message": "two"})
        assert limited.value.status == 429 and limited.value.code == "RATE_LIMIT_EXCEEDED"
        started = time.monotonic()
        result = sim.execute_with_retry("sim/hello", {"message": "three"}, max_retries=5, initial_delay=0.2)
        assert result.success is True and result.output["answer"] == "THREE"
        assert time.monotonic() - started >= 0.2
        info = sim.get_rate_limit_info()
        assert info is not None and info.limit == 1
    finally:
        sim.close()
