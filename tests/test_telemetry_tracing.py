"""Traces: a gateway exporting OTLP/HTTP to a loopback receiver (a real HTTP server decoding
the protobuf payloads) gives the expected span trees, parent links and GenAI attributes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from runyard import Client
from runyard.agents import app_tool, string
from runyard.agents import tool as client_tool
from runyard.workflows import Workflow
from support.gateway import GatewayProcess
from support.openai_mock import B, MockOpenAI
from support.otlp_receiver import OtlpReceiver, ReceivedSpan, children, named
from support.store_rows import inference_rows
from support.tasks_e2e import WorkerProcess
from support.telemetry_config import ADMIN_KEY, gateway_env, write_config

SERVER, CLIENT = 2, 3  # OTLP SpanKind values
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def traced_gateway(
    tmp_path: Path, mock_openai: MockOpenAI, receiver: OtlpReceiver
) -> Iterator[tuple[GatewayProcess, Path]]:
    receiver.clear()
    config = write_config(tmp_path, mock_openai.url, otlp_url=receiver.url)
    gw = GatewayProcess(config, env=gateway_env()).start()
    try:
        yield gw, tmp_path / "runyard.db"
    finally:
        gw.stop()


def one(spans: list[ReceivedSpan]) -> ReceivedSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def test_chat_with_a_failed_attempt_and_fallback_under_the_callers_trace(
    traced_gateway: tuple[GatewayProcess, Path], mock_openai: MockOpenAI, receiver: OtlpReceiver
) -> None:
    gw, db = traced_gateway
    mock_openai.script(B.status(500))
    resp = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "gpt-with-fallback", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    usage = resp.json()["usage"]

    def done(spans: list[ReceivedSpan]) -> bool:
        return any(s.name == "runyard.record" and s.trace_id == CALLER_TRACE for s in spans) and any(
            s.kind == SERVER and s.trace_id == CALLER_TRACE for s in spans
        )

    spans = [s for s in receiver.wait_for(done) if s.trace_id == CALLER_TRACE]
    assert {s.service for s in spans} == {"runyard-test"}
    server = one([s for s in spans if s.kind == SERVER])
    assert server.name == "POST /v1/chat/completions" and server.parent_id == CALLER_SPAN  # the caller is the root
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["runyard.request_id"] == resp.headers["x-request-id"]
    inference = one(children(spans, server))
    assert inference.name == "chat gpt-with-fallback"
    attrs = inference.attributes
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.request.model"] == "gpt-with-fallback"
    assert attrs["gen_ai.provider.name"] == "backup" and attrs["gen_ai.response.model"] == "gpt-secondary"
    assert attrs["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["runyard.route.candidates"] == "mock::gpt-primary,backup::gpt-secondary"
    failed, served = sorted((s for s in children(spans, inference) if s.kind == CLIENT), key=lambda s: s.name)[::-1]
    assert failed.name == "chat mock::gpt-primary" and failed.status_code == 2
    assert failed.attributes["error.type"] == "upstream_error"
    assert failed.attributes["runyard.fallback.to"] == "backup::gpt-secondary"
    assert failed.attributes["gen_ai.provider.name"] == "mock"
    assert served.name == "chat backup::gpt-secondary" and served.status_code != 2
    assert one(named(children(spans, inference), "runyard.record"))
    # each upstream call carried its attempt's span as traceparent
    sent = [r["headers"].get("traceparent") for r in mock_openai.requests]
    assert sent == [f"00-{CALLER_TRACE}-{failed.span_id}-01", f"00-{CALLER_TRACE}-{served.span_id}-01"]
    # the inference row keeps the trace id and the request id
    gw.stop()
    rows = inference_rows(db, "status", "trace_id", "request_id")
    assert rows == [("ok", CALLER_TRACE, resp.headers["x-request-id"])]


def test_new_trace_without_traceparent_and_embeddings(
    traced_gateway: tuple[GatewayProcess, Path], receiver: OtlpReceiver
) -> None:
    gw, _ = traced_gateway
    resp = httpx.post(
        gw.url + "/v1/embeddings",
        json={"model": "embed", "input": ["a", "b"]},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    spans = receiver.wait_for(lambda ss: any(s.kind == SERVER and s.name == "POST /v1/embeddings" for s in ss))
    server = one([s for s in spans if s.kind == SERVER and s.name == "POST /v1/embeddings"])
    assert server.parent_id is None
    inference = one(children(spans, server))
    assert inference.name == "embeddings embed"
    assert inference.attributes["gen_ai.operation.name"] == "embeddings"
    attempt = one(children(spans, inference))
    assert attempt.kind == CLIENT and attempt.attributes["gen_ai.provider.name"] == "mock"


def test_tracing_off_imports_no_opentelemetry(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    config = write_config(tmp_path, mock_openai.url)
    code = f"""
import sys
from starlette.testclient import TestClient
from runyard.config import load_config
from runyard.server.app import create_app
with TestClient(create_app(load_config({str(config)!r}))) as c:
    assert c.get("/healthz").status_code == 200
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
print("clean")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=gateway_env(), timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "clean", out.stderr[-2000:]


SUBMITTER = """
import json, sys
from runyard.telemetry import spans, tracing
tracing.install(tracing.Tracing(sys.argv[1], "runyard-api", 1.0))
with tracing.span("POST /v1/runs", kind="server"):
    with spans.task_submit("tests/echo"):
        carrier = spans.task_carrier()
tracing._active.shutdown()
print(json.dumps(carrier))
"""

WORKER = """
import json, sys
from datetime import datetime, timedelta, timezone
from runyard.telemetry import spans, tracing
tracing.install(tracing.Tracing(sys.argv[1], "runyard-worker", 1.0))
queued = datetime.now(timezone.utc) - timedelta(seconds=2)
with spans.task_run("tests/echo", "task-1", json.loads(sys.argv[2]), queued):
    with spans.workflow_block("ask", "llm"):
        with spans.agent_chat("helper"):
            with spans.tool_call("search", "call-1"):
                pass
tracing._active.shutdown()
"""


def test_task_trace_continues_in_another_process(receiver: OtlpReceiver) -> None:
    """The span helpers the task, workflow and agent code call (telemetry/spans.py): a task
    submitted in one process and run in another is one trace, parent links intact."""
    receiver.clear()
    env = gateway_env()
    submit = subprocess.run(
        [sys.executable, "-c", SUBMITTER, receiver.url], capture_output=True, text=True, env=env, timeout=60
    )
    assert submit.returncode == 0, submit.stderr[-2000:]
    carrier = submit.stdout.strip().splitlines()[-1]
    assert '"traceparent": "00-' in carrier
    run = subprocess.run(
        [sys.executable, "-c", WORKER, receiver.url, carrier], capture_output=True, text=True, env=env, timeout=60
    )
    assert run.returncode == 0, run.stderr[-2000:]
    spans = receiver.wait_for(lambda ss: len(ss) >= 7)
    by_name = {s.name: s for s in spans}
    root, submitted = by_name["POST /v1/runs"], by_name["task.submit tests/echo"]
    assert {s.trace_id for s in spans} == {root.trace_id}, "one trace across both processes"
    assert {by_name["task.run tests/echo"].service, submitted.service} == {"runyard-worker", "runyard-api"}
    assert submitted.parent_id == root.span_id
    assert by_name["task.queue_wait"].parent_id == submitted.span_id
    assert by_name["task.run tests/echo"].parent_id == submitted.span_id
    assert by_name["workflow.block ask"].parent_id == by_name["task.run tests/echo"].span_id
    assert by_name["invoke_agent helper"].parent_id == by_name["workflow.block ask"].span_id
    tool = by_name["execute_tool search"]
    assert tool.parent_id == by_name["invoke_agent helper"].span_id
    assert tool.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "search",
        "gen_ai.tool.call.id": "call-1",
    }


def by_name(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    return one([s for s in spans if s.name == name])


def received(*names: str, trace: str = CALLER_TRACE) -> Callable[[list[ReceivedSpan]], bool]:
    """A ``wait_for`` check: spans named ``names`` arrived, each with its ancestors up to the caller's span."""

    def check(spans: list[ReceivedSpan]) -> bool:
        ids = {s.span_id: s for s in spans if s.trace_id == trace}
        for name in names:
            found = [s for s in ids.values() if s.name == name]
            if not found:
                return False
            parent = found[0].parent_id
            while parent != CALLER_SPAN:
                if parent not in ids:
                    return False
                parent = ids[parent].parent_id
        return True

    return check


def test_task_run_by_a_separate_worker_process_continues_the_submitters_trace(
    tmp_path: Path, mock_openai: MockOpenAI, receiver: OtlpReceiver
) -> None:
    """``runyard serve --no-worker`` submits; a ``runyard worker`` process runs it in the same trace."""
    receiver.clear()
    config = write_config(tmp_path, mock_openai.url, otlp_url=receiver.url)
    gw = GatewayProcess(config, env=gateway_env(), args=["--no-worker"]).start()
    worker = WorkerProcess(config).start()
    try:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}", "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
        resp = httpx.post(
            gw.url + "/v1/runs", json={"app": "tests/echo@1.0.0", "input": {"text": "ab"}}, headers=headers, timeout=10
        )
        assert resp.status_code == 201, resp.text
        task_id = resp.json()["id"]
        deadline = time.monotonic() + 30
        while (task := httpx.get(f"{gw.url}/v1/tasks/{task_id}", headers=headers, timeout=10).json())[
            "status"
        ] != "completed":
            assert time.monotonic() < deadline and task["status"] in ("queued", "processing"), task
            time.sleep(0.05)
        spans = receiver.wait_for(received("task.run tests/echo", "task.queue_wait"))
    finally:
        worker.stop()
        gw.stop()
    spans = [s for s in spans if s.trace_id == CALLER_TRACE]
    server = by_name(spans, "POST /v1/runs")
    assert server.parent_id == CALLER_SPAN
    submit = one(children(spans, server))
    assert submit.name == "task.submit tests/echo" and submit.kind == CLIENT
    assert submit.attributes == {
        "runyard.task.app": "tests/echo",
        "runyard.task.id": task_id,
        "runyard.task.version": "1.0.0",
        "runyard.task.pool": "shared",
    }
    wait, run = sorted(children(spans, submit), key=lambda s: s.name)
    assert wait.name == "task.queue_wait" and wait.attributes == {"runyard.task.id": task_id}
    assert run.name == "task.run tests/echo" and run.status_code != 2
    attrs = run.attributes
    assert attrs["runyard.task.id"] == task_id and attrs["runyard.task.status"] == "completed"
    assert attrs["runyard.task.attempt"] == 1
    assert f":{worker.pid}:" in attrs["runyard.worker.id"]  # run by the worker process, not the gateway


def test_workflow_run_spans_each_block_and_its_model_call(
    traced_gateway: tuple[GatewayProcess, Path], mock_openai: MockOpenAI, receiver: OtlpReceiver
) -> None:
    gw, _ = traced_gateway
    name = "tests/traced-flow"
    flow = (
        Workflow(name)
        .input(text="string")
        .llm("ask", model="gpt", prompt="say {{ start.text }}")
        .output(answer="{{ ask.content }}")
        .to_dict()
    )
    caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    with Client(base_url=gw.url, api_key=ADMIN_KEY, max_retries=0, default_headers=caller) as client:
        client.workflows.save(flow)
        client.workflows.publish(name)
        result = client.workflows.execute(name, {"text": "hi"})
    assert result["success"] is True, result
    spans = receiver.wait_for(received(f"workflow {name}", "chat mock::gpt-test"))
    spans = [s for s in spans if s.trace_id == CALLER_TRACE]
    run = by_name(spans, f"workflow {name}")
    assert run.attributes == {
        "runyard.workflow.name": name,
        "runyard.workflow.version": 1,
        "runyard.workflow.success": True,
    }
    task_run = one([s for s in spans if s.span_id == run.parent_id])
    assert task_run.name == "task.run runyard/workflow"
    submit = one([s for s in spans if s.span_id == task_run.parent_id])
    assert submit.name == "task.submit runyard/workflow"
    assert one([s for s in spans if s.span_id == submit.parent_id]).kind == SERVER  # the execute request
    blocks = {s.name: s for s in children(spans, run)}
    assert set(blocks) == {"workflow.block start", "workflow.block ask", "workflow.block out"}
    ask = blocks["workflow.block ask"]
    assert ask.attributes == {
        "runyard.block.id": "ask",
        "runyard.block.kind": "llm",
        "runyard.block.status": "success",
        "runyard.block.attempts": 1,
    }
    chat = one(children(spans, ask))
    assert chat.name == "chat gpt" and chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.request.model"] == "gpt" and chat.attributes["gen_ai.usage.output_tokens"] > 0
    attempt = one([s for s in children(spans, chat) if s.kind == CLIENT])
    assert attempt.name == "chat mock::gpt-test" and attempt.attributes["gen_ai.provider.name"] == "mock"
    assert not children(spans, blocks["workflow.block start"])


def test_agent_chat_spans_model_calls_and_tool_calls(
    traced_gateway: tuple[GatewayProcess, Path], mock_openai: MockOpenAI, receiver: OtlpReceiver
) -> None:
    gw, _ = traced_gateway
    echo = app_tool("echo", "tests/echo@1.0.0").describe("Repeat").param("text", string()).input({"times": 2})
    caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    with Client(base_url=gw.url, api_key=ADMIN_KEY, max_retries=0, default_headers=caller) as client:
        client.agents.create("acme/helper", {"model": "gpt", "tools": [echo.build()]})
        mock_openai.script(B.reply(tool_calls=[{"id": "call_e", "name": "echo", "arguments": {"text": "ab"}}]))
        reply = client.agent("acme/helper").send_message("echo ab twice")
    assert reply.status == "idle" and reply.chat["tool_calls"][0]["result"]["text"] == "abab"
    spans = receiver.wait_for(
        lambda ss: (
            any(s.name == "invoke_agent acme/helper" for s in ss) and any(s.name.startswith("task.run") for s in ss)
        )
    )
    spans = [s for s in spans if s.trace_id == CALLER_TRACE]
    turn = by_name(spans, "invoke_agent acme/helper")
    assert one([s for s in spans if s.span_id == turn.parent_id]).kind == SERVER  # the send-message request
    assert turn.attributes == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "acme/helper",
        "gen_ai.agent.id": "acme/helper@1",
        "gen_ai.conversation.id": reply.chat["id"],
        "gen_ai.request.model": "gpt",
        "runyard.agent.status": "idle",
    }
    steps = children(spans, turn)
    model_calls = [s for s in steps if s.name == "chat gpt"]
    assert len(model_calls) == 2 and all(s.attributes["gen_ai.operation.name"] == "chat" for s in model_calls)
    assert model_calls[0].attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    tool = one([s for s in steps if s.name == "execute_tool echo"])
    assert tool.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "echo",
        "gen_ai.tool.call.id": "call_e",
        "gen_ai.tool.type": "app",
    }
    # the tool ran between the two model calls, and its app task is a child of the tool call
    first, second = sorted(model_calls, key=lambda s: s.start_ns)
    assert first.end_ns <= tool.start_ns and tool.end_ns <= second.start_ns
    submit = one(children(spans, tool))
    assert submit.name == "task.submit tests/echo"
    assert {s.name for s in children(spans, submit)} == {"task.queue_wait", "task.run tests/echo"}


def test_agent_client_tool_span_runs_until_its_result_is_submitted(
    traced_gateway: tuple[GatewayProcess, Path], mock_openai: MockOpenAI, receiver: OtlpReceiver
) -> None:
    gw, _ = traced_gateway
    trace = "5cf92f3577b34da6a3ce929d0e0e4737"
    caller = {"traceparent": f"00-{trace}-{CALLER_SPAN}-01"}
    with Client(base_url=gw.url, api_key=ADMIN_KEY, max_retries=0, default_headers=caller) as client:
        client.agents.create(
            "acme/asker", {"model": "gpt", "tools": [client_tool("lookup").param("q", string()).build()]}
        )
        agent = client.agent("acme/asker")
        mock_openai.script(B.reply(tool_calls=[{"id": "call_c", "name": "lookup", "arguments": {"q": "x"}}]))
        assert agent.send_message("look it up").status == "awaiting_tool_result"
        assert agent.submit_tool_result("call_c", "found it").text == "tool said: found it"
    spans = receiver.wait_for(received("execute_tool lookup", "chat mock::gpt-test", trace=trace))
    spans = [s for s in spans if s.trace_id == trace]
    first, resumed = sorted(named(spans, "invoke_agent acme/asker"), key=lambda s: s.start_ns)
    assert first.attributes["runyard.agent.status"] == "awaiting_tool_result"
    assert resumed.attributes["runyard.agent.status"] == "idle"
    tool_span = by_name(spans, "execute_tool lookup")
    assert (
        tool_span.attributes["gen_ai.tool.type"] == "client" and tool_span.attributes["gen_ai.tool.call.id"] == "call_c"
    )
    submit = one([s for s in spans if s.span_id == tool_span.parent_id])
    assert submit.kind == SERVER and submit.name.startswith("POST "), submit.name  # the submit request
    assert resumed.parent_id == submit.span_id  # the turn goes on in the request that brought the result
    assert tool_span.start_ns < submit.start_ns  # it began when the model asked for it
    assert first.start_ns < tool_span.start_ns < first.end_ns and tool_span.end_ns <= resumed.start_ns
