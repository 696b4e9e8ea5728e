"""Workflows end to end through the SDK, over both transports (HTTP to a real ``runyard serve``
with its in-process worker, and embedded): a 7-block DAG with a parallel branch, a map, a
condition, an llm block (mock upstream) and function blocks; versions and aliases; sync,
async job + polling, SSE stream with selected outputs; validation and failures."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard import Client
from runyard.config import load_config
from runyard.errors import ConflictError, RunyardError, ValidationError
from runyard.workflows import Workflow
from support.gateway import GatewayProcess
from support.openai_mock import MockOpenAI
from support.tasks_e2e import app_env


def workflows_toml(root: Path, openai_url: str) -> str:
    return f"""
[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"
flush_interval_ms = 20

[files]
dir = "{root / "files"}"

[apps]
modules = ["apps.flows", "apps.demo"]

[providers.mock]
kind = "openai"
base_url = "{openai_url}"
timeout = 2.0

[models.gpt]
routes = ["mock::gpt-test"]

[workers]
concurrency = 8
poll_interval_s = 0.1
"""


@pytest.fixture(scope="session")
def wf_config_path(tmp_path_factory: pytest.TempPathFactory, _mock_openai_server: MockOpenAI) -> Path:
    root = tmp_path_factory.mktemp("workflows")
    path = root / "runyard.toml"
    path.write_text(workflows_toml(root, _mock_openai_server.url))
    return path


@pytest.fixture(scope="session")
def wf_server(wf_config_path: Path) -> Iterator[GatewayProcess]:
    server = GatewayProcess(wf_config_path, env=app_env()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=["http", "embedded"])
def wf_client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, wf_config_path: Path
) -> Iterator[Client]:
    if request.param == "http":
        server: GatewayProcess = request.getfixturevalue("wf_server")
        client = Client(base_url=server.url, max_retries=0)
    else:
        root = tmp_path_factory.mktemp("workflows-embedded")
        config = load_config(wf_config_path)
        config.storage.url = f"sqlite+aiosqlite:///{root / 'embedded.db'}"
        config.files.dir = str(root / "files")
        client = Client.embedded(config=config, max_retries=0)
    try:
        yield client
    finally:
        client.close()


def unique(prefix: str) -> str:
    return f"tests/{prefix}-{uuid.uuid4().hex[:8]}"


def big_flow(name: str, greeting: str = "hello") -> dict[str, Any]:
    """input → (shout ‖ map(square) → total) → condition → big|small ; llm ; output."""
    return (
        Workflow(name)
        .input(text="string", nums={"type": "array"})
        .function("shout", "apps.flows:shout", text="{{ start.text }}")
        .map(
            "squares",
            "start.nums",
            {"kind": "function", "function": "apps.flows:slow_square", "args": {"x": "{{ item }}"}},
        )
        .function("total", "apps.flows:total", values="{{ squares.results | map(attribute='result') | list }}")
        .condition("check", "total.result > 10", then=["big"], otherwise=["small"])
        .function("big", "apps.flows:shout", text="big")
        .function("small", "apps.flows:shout", text="small")
        .llm("ask", model="gpt", prompt=greeting + " {{ shout.text }} and more words here")
        .output(
            shout="{{ shout.text }}",
            total="{{ total.result }}",
            verdict="{{ (big or small).text }}",
            answer="{{ ask.content }}",
        )
        .to_dict()
    )


def test_big_flow_sync_with_trace(wf_client: Client, mock_openai: MockOpenAI) -> None:
    name = unique("big")
    saved = wf_client.workflows.save(big_flow(name))
    assert saved["is_deployed"] is False
    published = wf_client.workflows.publish(name)
    assert published["published_version"] == 1 and published["aliases"] == {"main": 1}
    result = wf_client.workflows.execute(name, {"text": "hi", "nums": [1, 2, 3]})
    assert result["success"] is True and result["error"] is None
    assert result["output"] == {
        "shout": "HI",
        "total": 14,
        "verdict": "BIG",
        "answer": "echo: hello HI and more words here",
    }
    meta = result["metadata"]
    assert meta["duration"] >= 0 and meta["startedAt"] <= meta["completedAt"]
    spans = {s["blockId"]: s for s in result["trace_spans"]}
    assert set(spans) == {"start", "shout", "squares", "total", "check", "big", "ask", "out"}  # small skipped
    assert all(s["status"] == "success" and s["duration"] >= 0 for s in spans.values())
    assert spans["ask"]["tokens"]["total"] > 0 and spans["ask"]["kind"] == "llm"
    assert [c["blockId"] for c in spans["squares"]["children"]] == ["squares[0]", "squares[1]", "squares[2]"]
    # the map items ran concurrently (each sleeps 50 ms): every one started before any finished
    # (an overlap check, not a wall-clock bound, so a loaded CI machine cannot fail it)
    children = spans["squares"]["children"]
    assert max(c["startTime"] for c in children) < min(c["endTime"] for c in children)
    # shout and the map are independent branches: both started before either's dependents
    assert spans["shout"]["startTime"] < spans["total"]["startTime"]
    assert result["total_duration"] >= spans["squares"]["duration"]
    small = wf_client.workflows.execute(name, {"text": "x", "nums": [1]})
    assert small["output"]["verdict"] == "SMALL"


def simple(name: str, tag: str) -> dict[str, Any]:
    return (
        Workflow(name)
        .input(text="string")
        .function("f", "apps.flows:shout", text=tag + "{{ start.text }}")
        .output(value="{{ f.text }}")
        .to_dict()
    )


def test_versions_and_aliases(wf_client: Client) -> None:
    name = unique("ver")
    wf_client.workflows.save(simple(name, "one-"))
    wf_client.workflows.publish(name)
    status = wf_client.workflows.status(name)
    assert status["is_deployed"] and status["deployed_at"] and status["needs_redeployment"] is False
    wf_client.workflows.save(simple(name, "two-"))
    assert wf_client.workflows.status(name)["needs_redeployment"] is True
    assert wf_client.workflows.execute(name, {"text": "x"})["output"] == {"value": "ONE-X"}
    published = wf_client.workflows.publish(name)
    assert published["published_version"] == 2 and published["deployed_version"] == 2
    assert published["needs_redeployment"] is False
    assert wf_client.workflows.execute(f"{name}@main", {"text": "x"})["output"] == {"value": "TWO-X"}
    wf_client.workflows.set_alias(name, "main", 1)  # roll back without touching the caller
    assert wf_client.workflows.execute(name, {"text": "x"})["output"] == {"value": "ONE-X"}
    assert wf_client.workflows.execute(f"{name}@v2", {"text": "x"})["output"] == {"value": "TWO-X"}
    task = wf_client.run(f"{name}@main", {"text": "q"})  # client.run works for workflows as for apps
    assert task.status == "completed" and task.output == {"value": "ONE-Q"}
    wf_client.workflows.set_alias(name, "beta", 2)
    assert wf_client.workflows.execute(f"{name}@beta", {"text": "y"})["output"] == {"value": "TWO-Y"}
    assert name in [w["name"] for w in wf_client.workflows.list()]
    with pytest.raises(RunyardError) as info:
        wf_client.workflows.execute(f"{name}@nope", {"text": "y"})
    assert info.value.code == "alias_not_found"


def test_async_job_and_polling(wf_client: Client) -> None:
    name = unique("job")
    wf_client.workflows.save(big_flow(name))
    wf_client.workflows.publish(name)
    queued = wf_client.workflows.execute(name, {"text": "a", "nums": [5]}, async_execution=True)
    assert queued["status"] == "queued" and queued["links"]["status"] == f"/v1/jobs/{queued['task_id']}"
    first = wf_client.jobs.get(queued["task_id"])
    assert first["status"] in ("queued", "processing", "completed")
    job = wf_client.jobs.wait(queued["task_id"], polling_interval=0.05, timeout=20)
    assert job["status"] == "completed"
    assert job["output"]["total"] == 25 and job["metadata"]["duration"] is not None
    assert job["trace_spans"]
    assert job["estimatedDuration"] == pytest.approx(job["metadata"]["duration"], abs=1.0)
    again = wf_client.workflows.execute(name, {"text": "a", "nums": [1]}, async_execution=True)
    second = wf_client.jobs.wait(again["task_id"], polling_interval=0.05)
    mean = (job["metadata"]["duration"] + second["metadata"]["duration"]) / 2
    assert second["estimatedDuration"] == pytest.approx(mean, abs=1.0)  # from the stored runs


def test_estimated_duration_survives_restart(wf_server: GatewayProcess, wf_config_path: Path) -> None:
    """A second gateway on the same store (another replica, or a restart) gives the same estimate."""
    name = unique("estimate")
    with Client(base_url=wf_server.url, max_retries=0) as http:
        http.workflows.save(simple(name, "one"))
        http.workflows.publish(name)
        queued = http.workflows.execute(name, {"text": "x"}, async_execution=True)
        job = http.jobs.wait(queued["task_id"], polling_interval=0.05, timeout=20)
    assert job["estimatedDuration"] is not None
    with Client.embedded(config=load_config(wf_config_path), max_retries=0) as replica:
        assert replica.jobs.get(queued["task_id"])["estimatedDuration"] == job["estimatedDuration"]


def test_stream_with_selected_outputs(wf_client: Client) -> None:
    name = unique("stream")
    wf_client.workflows.save(big_flow(name, greeting="one two three"))
    wf_client.workflows.publish(name)
    events = list(
        wf_client.workflows.execute(
            name, {"text": "go", "nums": [1, 2]}, stream=True, selected_outputs=["ask.content", "total.result"]
        )
    )
    done = events[-1]
    assert done["event"] == "done" and done["success"] is True
    assert done["output"] == {"ask.content": "echo: one two three GO and more words here", "total.result": 5}
    chunks = [e for e in events[:-1] if "chunk" in e]
    assert {c["blockId"] for c in chunks} == {"ask", "total"}
    ask = [c["chunk"] for c in chunks if c["blockId"] == "ask"]
    assert len(ask) > 3 and "".join(ask) == done["output"]["ask.content"]
    starts = [e["blockId"] for e in events if e.get("event") == "block:start"]
    finishes = [e["blockId"] for e in events if e.get("event") == "block:finish"]
    assert "ask" in starts and "ask" in finishes
    first_chunk = next(i for i, e in enumerate(events) if e.get("blockId") == "ask" and "chunk" in e)
    assert events.index({"event": "block:start", "blockId": "ask", "kind": "llm"}) < first_chunk
    assert first_chunk < next(
        i for i, e in enumerate(events) if e.get("event") == "block:finish" and e["blockId"] == "ask"
    )


def test_stream_over_raw_http(wf_server: GatewayProcess, wf_client: Client) -> None:
    """curl's view: real SSE lines ending in [DONE]."""
    name = unique("curl")
    with Client(base_url=wf_server.url, max_retries=0) as client:
        client.workflows.save(simple(name, "c-"))
        client.workflows.publish(name)
    body = {"input": {"text": "z"}, "stream": True}
    with httpx.stream("POST", f"{wf_server.url}/v1/workflows/{name}/execute", json=body, timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert '"event":"done"' in lines[-2] and '"value":"C-Z"' in lines[-2]


def test_validation_names_each_block(wf_client: Client) -> None:
    flow = {
        "name": "tests/bad",
        "blocks": [
            {"id": "a", "kind": "function", "function": "apps.flows:shout", "args": {"text": "{{ b.text }}"}},
            {"id": "b", "kind": "function", "function": "apps.flows:shout", "args": {"text": "{{ a.text }}"}},
            {"id": "c", "kind": "teleport"},
            {"id": "d", "kind": "output", "outputs": {"x": "{{ ghost.value }}"}},
            {"id": "e", "kind": "output", "outputs": {"x": "{{ ''.__class__ }}"}},
        ],
    }
    with pytest.raises(ValidationError) as info:
        wf_client.workflows.save(flow)
    assert info.value.status == 422 and info.value.code == "invalid_workflow"
    problems = {(p["block"], p["code"]) for p in info.value.details}
    assert {("a", "cycle"), ("b", "cycle"), ("c", "unknown_kind"), ("d", "dangling_reference")} <= problems
    assert ("e", "unsafe_template") in problems
    with pytest.raises(ValidationError):
        wf_client.workflows.validate(flow)
    ok = wf_client.workflows.validate(simple("tests/fine", "x"))
    assert ok["valid"] is True


def test_undeployed_and_unknown(wf_client: Client) -> None:
    name = unique("draft")
    wf_client.workflows.save(simple(name, "d-"))
    with pytest.raises(ConflictError) as info:
        wf_client.workflows.execute(name, {"text": "x"})
    assert info.value.code == "workflow_not_deployed" and info.value.status == 409
    with pytest.raises(RunyardError) as missing:
        wf_client.workflows.execute("tests/never-saved", {})
    assert missing.value.code == "workflow_not_found" and missing.value.status == 404


def test_failures_retries_timeouts_and_sandbox(wf_client: Client) -> None:
    name = unique("fail")
    key = uuid.uuid4().hex
    flow = {
        "name": name,
        "blocks": [
            {"id": "start", "kind": "input", "inputs": {"text": "string"}},
            {"id": "flaky", "kind": "function", "function": "apps.flows:flaky", "args": {"key": key}, "retries": 2},
            {"id": "kaput", "kind": "function", "function": "apps.flows:boom", "on_error": "continue"},
            {"id": "out", "kind": "output", "outputs": {"flaky": "{{ flaky.result }}", "kaput": "{{ kaput.error }}"}},
        ],
    }
    wf_client.workflows.save(flow)
    wf_client.workflows.publish(name)
    result = wf_client.workflows.execute(name, {"text": "x"})
    assert result["success"] is True
    assert result["output"]["flaky"] == "ok" and "kaboom" in result["output"]["kaput"]
    spans = {s["blockId"]: s for s in result["trace_spans"]}
    assert spans["flaky"]["attempts"] == 2 and spans["kaput"]["status"] == "error"

    failing = unique("boom")
    wf_client.workflows.save(
        Workflow(failing)
        .input(text="string")
        .function("explode", "apps.flows:boom")
        .output(x="{{ explode }}")
        .to_dict()
    )
    wf_client.workflows.publish(failing)
    bad = wf_client.workflows.execute(failing, {"text": "x"})
    assert bad["success"] is False and bad["error"]["block"] == "explode" and "kaboom" in bad["error"]["message"]
    assert bad["output"] is None

    slow = unique("slow")
    wf_client.workflows.save(
        Workflow(slow)
        .block("nap", "function", function="apps.flows:slow_square", args={"x": 2, "delay": 2}, timeout=0.1)
        .output(x="{{ nap.result }}")
        .to_dict()
    )
    wf_client.workflows.publish(slow)
    started = time.monotonic()
    timed = wf_client.workflows.execute(slow, {})
    assert timed["error"]["code"] == "block_timeout" and timed["error"]["block"] == "nap"
    assert time.monotonic() - started < 1.5

    sneaky = unique("sneaky")  # passes the static check, refused by the sandbox at run time
    wf_client.workflows.save(
        Workflow(sneaky).input(text="string").output(x="{{ start.text | attr('__class__') }}").to_dict()
    )
    wf_client.workflows.publish(sneaky)
    refused = wf_client.workflows.execute(sneaky, {"text": "x"})
    assert refused["success"] is False and refused["error"]["code"] == "template_refused"


def test_cli_push_publish_alias_status_ls(wf_server: GatewayProcess, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **app_env(), "COLUMNS": "200"}
        return subprocess.run(
            [sys.executable, "-m", "runyard", "workflows", *args, "--base-url", wf_server.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    name = unique("cli")
    path = tmp_path / "flow.yaml"
    path.write_text(Workflow(name).to_yaml())  # empty: refused with the problem listed
    bad = cli("push", str(path))
    assert bad.returncode == 1 and "invalid_workflow" in bad.stderr
    path.write_text(Workflow(name).function("f", "apps.flows:square", x=3).to_yaml())
    assert cli("push", str(path)).returncode == 0
    assert "published v1" in cli("publish", name).stdout
    assert "published v2" in cli("publish", name, "--alias", "").stdout
    assert cli("alias", name, "main", "v2").returncode == 0
    status = json.loads(cli("status", name).stdout)
    assert status["is_deployed"] and status["aliases"] == {"main": 2} and status["deployed_version"] == 2
    assert name in cli("ls").stdout
    run = cli("run", f"{name}@main")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["success"] is True


def test_agent_block_runs_an_agent_and_streams_its_answer(wf_client: Client) -> None:
    name = unique("agent")
    flow = (
        Workflow(name)
        .input(text="string")
        .function("shout", "apps.flows:shout", text="{{ start.text }}")
        .agent("helper", {"model": "gpt", "system_prompt": "Be brief."}, "{{ shout.text }} please")
        .output(answer="{{ helper.content }}", steps="{{ helper.steps }}")
        .to_dict()
    )
    wf_client.workflows.save(flow)
    wf_client.workflows.publish(name)
    result = wf_client.workflows.execute(name, {"text": "hi"})
    assert result["success"] is True, result["error"]
    assert result["output"]["answer"] == "echo: HI please"
    span = next(s for s in result["trace_spans"] if s["blockId"] == "helper")
    assert span["kind"] == "agent" and span["children"][0]["status"] == "idle"
    events = list(wf_client.workflows.execute(name, {"text": "yo"}, stream=True, selected_outputs=["helper.content"]))
    chunks = "".join(e["chunk"] for e in events if e.get("blockId") == "helper" and "chunk" in e)
    assert chunks == "echo: YO please"
    with pytest.raises(RunyardError) as info:  # an agent block needs a message
        wf_client.workflows.save(
            {"name": unique("agent-bad"), "blocks": [{"id": "a", "kind": "agent", "agent": "x/y"}]}
        )
    assert any(p["block"] == "a" and p["code"] == "missing_field" for p in info.value.details)


def test_validate_a_stored_workflow_by_ref(wf_client: Client) -> None:
    name = unique("check")
    wf_client.workflows.save(simple(name, "one"))
    before = wf_client.workflows.validate(name)
    assert before["valid"] is False and before["is_deployed"] is False
    assert before["problems"][0]["code"] == "workflow_not_deployed"
    wf_client.workflows.publish(name)
    after = wf_client.workflows.validate(name)
    assert after == {"name": name, "version": 1, "is_deployed": True, "valid": True, "problems": []}
    assert wf_client.workflows.validate(f"{name}@nope")["problems"][0]["code"] == "alias_not_found"
    with pytest.raises(RunyardError) as info:
        wf_client.workflows.validate(unique("missing"))
    assert info.value.status == 404


def test_with_options_is_a_per_call_policy_on_the_same_client(wf_client: Client) -> None:
    name = unique("opts")
    wf_client.workflows.save(simple(name, "one"))
    wf_client.workflows.publish(name)
    patient = wf_client.with_options(max_retries=5, timeout=60)  # Sim's execute_with_retry, as a policy
    assert patient.workflows.execute(name, {"text": "x"})["output"] == {"value": "ONEX"}
    patient.close()  # a view: the client it came from keeps working
    assert wf_client.workflows.execute(name, {"text": "y"})["output"] == {"value": "ONEY"}
