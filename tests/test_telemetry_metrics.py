"""/metrics after a scripted traffic mix, over HTTP, across two gateway processes sharing
PROMETHEUS_MULTIPROC_DIR: every count is the one the traffic implies. And /metrics' auth."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runyard import Client, RateLimitError
from runyard.workflows import Workflow
from support.gateway import GatewayProcess
from support.openai_mock import B, MockOpenAI
from support.telemetry_config import ADMIN_KEY, METRICS_TOKEN, create_key, gateway_env, write_config

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, token: str = METRICS_TOKEN) -> Samples:
    resp = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture
def two_gateways(tmp_path: Path, mock_openai: MockOpenAI) -> Iterator[tuple[GatewayProcess, GatewayProcess, str]]:
    config = write_config(tmp_path, mock_openai.url)
    limited_key = create_key(config, "limited", "--rpm-sync", "1")
    shared = tmp_path / "prom"
    shared.mkdir()
    env = gateway_env(PROMETHEUS_MULTIPROC_DIR=str(shared))
    a = GatewayProcess(config, env=env).start()
    try:
        b = GatewayProcess(config, env=env).start()
        try:
            yield a, b, limited_key
        finally:
            b.stop()
    finally:
        a.stop()


def test_traffic_mix_counts_across_two_processes(
    two_gateways: tuple[GatewayProcess, GatewayProcess, str], mock_openai: MockOpenAI
) -> None:
    a, b, limited_key = two_gateways
    with (
        Client(base_url=a.url, api_key=ADMIN_KEY, max_retries=0) as ca,
        Client(base_url=b.url, api_key=ADMIN_KEY, max_retries=0) as cb,
        Client(base_url=a.url, api_key=limited_key, max_retries=0) as limited,
    ):
        # On A: a chat with a fallback (cache miss), a chat (miss), the same again (hit),
        # a limited key's chat (miss) and its second, refused (429 rpm_sync).
        mock_openai.script(B.status(500))
        fallback = ca.ai.chat("fallback please", model="gpt-with-fallback")
        assert fallback.provider == "backup"
        assert ca.ai.chat("hello", model="gpt").provider == "mock"
        assert ca.ai.chat("hello", model="gpt").metadata["cache_hit"] is True
        limited.ai.chat("limited", model="gpt")
        with pytest.raises(RateLimitError):
            limited.ai.chat("limited again", model="gpt")
        # On B: a stream, an embedding, 3 tasks.
        text = "".join(c.delta.content or "" for c in cb.ai.chat("streamed", model="gpt", stream=True))
        assert text == "echo: streamed"
        assert len(cb.ai.embed.create(["one", "two"], model="embed").embeddings) == 2
        for i in range(3):
            assert cb.run("tests/echo", {"text": f"t{i}"}).status == "completed"
        # On A: a workflow with one llm block (its task runs on either process's worker).
        name = f"tests/metrics-{uuid.uuid4().hex[:8]}"
        flow = Workflow(name).input(text="string").llm("ask", model="gpt", prompt="{{ start.text }}")
        ca.workflows.save(flow.output(answer="{{ ask.content }}").to_dict())
        ca.workflows.publish(name)
        assert ca.workflows.execute(name, {"text": "from a flow"})["output"] == {"answer": "echo: from a flow"}

    for url in (a.url, b.url):  # whichever process answers, the same totals
        m = scrape(url)
        inferences = "runyard_inferences_total"
        assert value(m, inferences, kind="chat", model="gpt-with-fallback", provider="backup", outcome="ok") == 1
        # hello, the limited key's first, the stream, the workflow's llm block
        assert value(m, inferences, kind="chat", model="gpt", provider="mock", outcome="ok") == 4
        assert value(m, inferences, kind="chat", model="gpt", provider="mock", outcome="cached") == 1
        assert value(m, inferences, kind="embed", model="embed", provider="mock", outcome="ok") == 1
        assert total(m, inferences) == 7
        attempts = "runyard_upstream_attempts_total"
        assert value(m, attempts, provider="mock", outcome="error") == 1
        assert value(m, attempts, provider="backup", outcome="ok") == 1
        assert value(m, attempts, provider="mock", outcome="ok") == 5  # 4 chats + 1 embedding
        assert total(m, attempts) == 7
        # every non-streamed chat looks the cache up: fallback, hello x2, limited, workflow
        assert value(m, "runyard_cache_lookups_total", result="hit") == 1
        assert value(m, "runyard_cache_lookups_total", result="miss") == 4
        assert value(m, "runyard_rate_limited_total", limit="rpm_sync") == 1
        assert total(m, "runyard_rate_limited_total") == 1
        # tokens and cost of the one priced model, exactly what the caller was told
        tokens = "runyard_tokens_total"
        usage = fallback.usage
        assert value(m, tokens, model="gpt-with-fallback", provider="backup", type="input") == usage.input_tokens
        assert value(m, tokens, model="gpt-with-fallback", provider="backup", type="output") == usage.output_tokens
        cost = value(m, "runyard_cost_usd_total", model="gpt-with-fallback", provider="backup")
        assert cost == pytest.approx((usage.input_tokens * 1.0 + usage.output_tokens * 2.0) / 1e6)
        ttft = "runyard_time_to_first_token_seconds_count"
        assert value(m, ttft, model="gpt", provider="mock") == 1  # the one stream
        # HTTP: route templates, statuses
        chat_route = "/v1/ai/chat"
        assert value(m, "runyard_requests_total", route=chat_route, status="200") == 5  # 3 + limited + stream
        assert value(m, "runyard_requests_total", route=chat_route, status="429") == 1
        assert value(m, "runyard_requests_total", route="/v1/ai/embed", status="200") == 1
        assert value(m, "runyard_request_duration_seconds_count", route=chat_route) == 6
        assert not any(ls and dict(ls).get("route", "").startswith("/v1/tasks/t") for (_, ls) in m), "raw paths"
        # tasks, from the store
        assert value(m, "runyard_tasks_total", app="tests/echo", status="completed") == 3
        assert value(m, "runyard_tasks_total", app="runyard/workflow", status="completed") == 1
        assert value(m, "runyard_task_duration_seconds_count", app="tests/echo") == 3
        assert value(m, "runyard_queue_depth", pool="default") == 0
        assert value(m, "runyard_recorder_dropped_rows_total") == 0
        assert ("runyard_recorder_backlog_bytes", frozenset()) in m  # 0 once the rows are written


def test_metrics_auth(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    config = write_config(tmp_path, mock_openai.url)
    workspace_key = create_key(config, "tenant")
    gw = GatewayProcess(config, env=gateway_env()).start()
    try:
        assert httpx.get(gw.url + "/metrics").status_code == 401
        wrong = httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["request_id"] == wrong.headers["x-request-id"]
        tenant = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {workspace_key}"})
        assert tenant.status_code == 403 and tenant.json()["error"]["code"] == "admin_key_required"
        assert "runyard_requests_total" in scrape(gw.url, ADMIN_KEY).__repr__()
        assert scrape(gw.url, METRICS_TOKEN)
    finally:
        gw.stop()
