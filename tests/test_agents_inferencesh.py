"""The real ``inferencesh`` package (from PyPI, unchanged) against ``runyard serve``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.gateway import GatewayProcess
from support.openai_mock import B, MockOpenAI
from support.tasks_e2e import app_env
from test_agents import agents_toml

inferencesh = pytest.importorskip("inferencesh")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, _mock_openai_server: MockOpenAI) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("infsh")
    path = root / "runyard.toml"
    path.write_text(agents_toml(root, _mock_openai_server.url))
    proc = GatewayProcess(path, env=app_env()).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def infsh(server: GatewayProcess) -> Any:
    return inferencesh.inference(api_key="unused", base_url=server.url + "/inferencesh")


def test_run_wait_stream_and_get_task(infsh: Any) -> None:
    done = infsh.run({"app": "tests/echo@1.0.0", "input": {"text": "hi", "times": 2}})
    assert done["output"]["text"] == "hihi"
    queued = infsh.run({"app": "tests/echo@1.0.0", "input": {"text": "yo"}}, wait=False)
    assert queued["id"]
    updates = list(infsh.run({"app": "tests/echo@1.0.0", "input": {"text": "ab"}}, stream=True))
    assert updates[-1]["output"]["text"] == "ab"
    for _ in range(100):
        task = infsh.get_task(queued["id"]).data
        if task["status"] == 10:
            break
        time.sleep(0.05)
    assert task["output"]["text"] == "yo"


def test_upload_file(infsh: Any) -> None:
    from inferencesh.client import UploadFileOptions

    ref = infsh.upload_file(b"hello bytes", UploadFileOptions(filename="h.txt", content_type="text/plain"))
    assert ref["uri"].startswith("inferencesh-upload://") and ref["filename"] == "h.txt"
    done = infsh.run({"app": "tests/invert", "input": {"image": ref["uri"]}})  # the uri works as an app input
    assert done["status"] == 10 and done["output"]


def test_template_agent_with_client_tool(infsh: Any, mock_openai: MockOpenAI, server: GatewayProcess) -> None:
    from runyard import Client
    from runyard.agents import string, tool

    with Client(base_url=server.url, max_retries=0) as rc:
        rc.agents.create("acme/infsh", {"model": "gpt", "tools": [tool("get_weather").param("city", string()).build()]})
    mock_openai.script(B.reply(tool_calls=[{"id": "call_w", "name": "get_weather", "arguments": {"city": "Paris"}}]))
    agent = infsh.agent("acme/infsh@latest")
    calls: list[Any] = []

    def on_tool_call(call: Any) -> None:
        calls.append(call)
        agent.submit_tool_result(call.id, {"temp": 21})

    messages: list[Any] = []
    agent.send_message("weather in Paris?", on_message=messages.append, on_tool_call=on_tool_call)
    assert calls and calls[0].name == "get_weather" and calls[0].args == {"city": "Paris"}
    chat = agent.get_chat()
    assert (
        chat["output"] == 'tool said: {"temp":21}'
        or chat["output"] == "tool said: {'temp': 21}"
        or "21" in chat["output"]
    )
    assert chat["status"] == "idle"


async def test_async_client_ad_hoc_agent_config(server: GatewayProcess, mock_openai: MockOpenAI) -> None:
    from inferencesh.tools import app_tool, string, tool

    client = inferencesh.async_inference(api_key="unused", base_url=server.url + "/inferencesh")
    config = {
        "name": "adhoc",
        "core_app": {"ref": "gpt"},
        "system_prompt": "be useful",
        "tools": [
            tool("lookup").describe("Look up").param("q", string("query")).build(),
            app_tool("echo", "tests/echo@1.0.0").describe("Repeat").input({"times": 3}).build(),
        ],
    }
    mock_openai.script(
        B.reply(tool_calls=[{"id": "call_e", "name": "echo", "arguments": {"text": "ha"}}]),
        B.reply(tool_calls=[{"id": "call_l", "name": "lookup", "arguments": {"q": "x"}}]),
    )
    agent = client.agent(config)
    seen: list[Any] = []

    async def on_tool_call(call: Any) -> None:
        seen.append(call)
        await agent.submit_tool_result(call.id, "looked up")

    await agent.send_message("go", on_tool_call=on_tool_call)
    assert [c.name for c in seen] == ["lookup"]
    chat = await agent.get_chat()
    assert chat["output"] == "tool said: looked up"
    tool_msgs = [m for m in chat["messages"] if m["role"] == "tool"]
    assert '"text":"hahaha"' in tool_msgs[0]["content"]
    sent = mock_openai.requests[0]["json"]
    assert sent["messages"][0] == {"role": "system", "content": "be useful"}
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["q"]


def test_approval_approve_and_reject(infsh: Any, mock_openai: MockOpenAI) -> None:
    from inferencesh.agent import pending_approvals
    from inferencesh.tools import app_tool

    config = {
        "core_app": {"ref": "gpt"},
        "tools": [app_tool("echo", "tests/echo@1.0.0").require_approval().build()],
    }
    agent = infsh.agent(config)
    mock_openai.script(B.reply(tool_calls=[{"id": "call_a", "name": "echo", "arguments": {"text": "go"}}]))
    chats: list[Any] = []
    agent.send_message("deploy", on_message=lambda m: None)
    pending = pending_approvals(agent.get_chat())
    assert [p.tool_name for p in pending] == ["echo"] and pending[0].arguments == {"text": "go"}
    agent.approve_tool(pending[0].tool_invocation_id)
    chat = agent.get_chat()
    assert chat["status"] == "idle" and chat["output"] == 'tool said: {"text":"go","attempt":1}'
    assert pending_approvals(chat) == [] and not chats

    mock_openai.script(B.reply(tool_calls=[{"id": "call_b", "name": "echo", "arguments": {"text": "no"}}]))
    agent.send_message("deploy again")
    pending = pending_approvals(agent.get_chat())
    agent.reject_tool(pending[0].tool_invocation_id, reason="too risky")
    chat = agent.get_chat()
    assert "too risky" in chat["output"] and chat["status"] == "idle"
