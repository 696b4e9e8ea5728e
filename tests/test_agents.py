"""Agents end to end over both transports (``runyard serve`` and embedded), with the mock
OpenAI upstream scripting the model's tool calls."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from runyard import Client
from runyard.agents import agent_tool, app_tool, enum_of, integer, internal_tools, optional, string, tool, webhook_tool
from runyard.errors import ConflictError, NotFoundError, ValidationError
from runyard.services.webhooks import SIGNATURE_HEADER, verify
from support.gateway import GatewayProcess
from support.loopback import LoopbackServer
from support.openai_mock import B, MockOpenAI
from support.tasks_e2e import app_env, embedded_client, tasks_toml

pytestmark = pytest.mark.timeout(60)

TOOL_SECRET = "tool-hmac-secret"


def call(name: str, args: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    return {"id": call_id, "name": name, "arguments": args}


def agents_toml(root: Path, openai_url: str) -> str:
    """The apps & tasks test config (apps, secrets, private webhooks allowed) plus the mock model."""
    text = tasks_toml(root).replace('modules = ["apps.demo"]', 'modules = ["apps.demo", "apps.agent_images"]')
    text = text.replace('PRESENT_TOKEN = "s3cret"', f'PRESENT_TOKEN = "s3cret"\nTOOL_SECRET = "{TOOL_SECRET}"')
    return (
        text
        + f"""
[providers.mock]
kind = "openai"
base_url = "{openai_url}"
timeout = 5.0

[models.gpt]
routes = ["mock::gpt-test"]
"""
    )


@pytest.fixture(scope="module")
def agents_config(tmp_path_factory: pytest.TempPathFactory, _mock_openai_server: MockOpenAI) -> Path:
    root = tmp_path_factory.mktemp("agents")
    path = root / "runyard.toml"
    path.write_text(agents_toml(root, _mock_openai_server.url))
    return path


@pytest.fixture(scope="module", params=["http", "embedded"])
def client(
    request: pytest.FixtureRequest, agents_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    if request.param == "http":
        server = GatewayProcess(agents_config, env=app_env()).start()
        c = Client(base_url=server.url, max_retries=0)
        try:
            yield c
        finally:
            c.close()
            server.stop()
    else:
        c = embedded_client(agents_config, tmp_path_factory.mktemp("agents-embedded"))
        try:
            yield c
        finally:
            c.close()


def last_user_text(mock: MockOpenAI) -> list[dict[str, Any]]:
    return mock.requests[-1]["json"]["messages"]


# -- templates ----------------------------------------------------------------------------------


def test_templates_are_versioned_and_resolve_latest(client: Client, mock_openai: MockOpenAI) -> None:
    v1 = client.agents.create("acme/helper", {"model": "gpt", "system_prompt": "v1"})
    v2 = client.agents.create("acme/helper", "model: gpt\nsystem_prompt: v2\nmax_steps: 3\n")  # YAML
    assert v2["version"] == v1["version"] + 1
    assert client.agents.get(v1["id"])["config"]["system_prompt"] == "v1"
    latest = client.agents.get("acme/helper@latest")
    assert latest["id"] == v2["id"] and latest["config"]["max_steps"] == 3
    with pytest.raises(NotFoundError) as err:
        client.agents.get("acme/nope@latest")
    assert err.value.code == "agent_not_found"

    reply = client.agent("acme/helper@latest").send_message("hello there")
    assert reply.text == "echo: hello there" and reply.status == "idle"
    assert mock_openai.requests[-1]["json"]["messages"][0] == {"role": "system", "content": "v2"}


def test_multi_turn_history_and_reset(client: Client, mock_openai: MockOpenAI) -> None:
    agent = client.agent({"model": "gpt", "system_prompt": "be brief", "temperature": 0.2, "max_tokens": 50})
    assert agent.send_message("first").text == "echo: first"
    assert agent.send_message("second").text == "echo: second"
    sent = mock_openai.requests[-1]["json"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 50
    chat = agent.get_chat()
    assert [m["content"] for m in chat["messages"]] == ["first", "echo: first", "second", "echo: second"]
    assert len(chat["steps"]) == 2 and chat["steps"][0]["inference_id"]
    reset = agent.reset()
    assert reset.chat["messages"] == [] and agent.get_chat()["messages"] == []
    assert agent.send_message("again").text == "echo: again"
    assert [m["role"] for m in mock_openai.requests[-1]["json"]["messages"]] == ["system", "user"]


# -- client tools -------------------------------------------------------------------------------


def test_client_tool_via_callback(client: Client, mock_openai: MockOpenAI) -> None:
    weather = tool("get_weather").display("Weather").describe("Current weather").param("city", string("City"))
    agent = client.agent({"model": "gpt", "tools": [weather.build()]})
    mock_openai.script(B.reply(tool_calls=[call("get_weather", {"city": "Oslo"}, "call_w")]))
    seen: list[dict[str, Any]] = []

    def on_tool_call(c: dict[str, Any]) -> Any:
        seen.append(c)
        return {"temp_c": -3}

    reply = agent.send_message("weather in Oslo?", on_tool_call=on_tool_call)
    assert seen[0]["name"] == "get_weather" and seen[0]["arguments"] == {"city": "Oslo"}
    assert reply.status == "idle" and reply.text == 'tool said: {"temp_c":-3}'
    sent = mock_openai.requests[0]["json"]
    assert sent["tools"][0]["function"]["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City"}},
        "required": ["city"],
    }
    chat = agent.get_chat()
    assert chat["tool_calls"][0]["status"] == "done" and chat["tool_calls"][0]["result"] == {"temp_c": -3}


def test_client_tool_pause_submit_and_errors(client: Client, mock_openai: MockOpenAI) -> None:
    agent = client.agent({"model": "gpt", "tools": [tool("lookup").param("q", string()).build()]})
    mock_openai.script(B.reply(tool_calls=[call("lookup", {"q": "x"}, "call_a")]))
    paused = agent.send_message("look it up")
    assert paused.status == "awaiting_tool_result"
    assert [c["id"] for c in paused.pending_tool_calls] == ["call_a"]
    with pytest.raises(ConflictError) as busy:
        agent.send_message("hurry")
    assert busy.value.code == "chat_awaiting"
    with pytest.raises(NotFoundError) as unknown:
        agent.submit_tool_result("call_nope", "x")
    assert unknown.value.code == "unknown_tool_call"
    done = agent.submit_tool_result("call_a", "found it")
    assert done.status == "idle" and done.text == "tool said: found it"
    with pytest.raises(ConflictError) as twice:
        agent.submit_tool_result("call_a", "again")
    assert twice.value.code == "tool_result_already_submitted"


def test_from_function_tool_runs_in_the_sdk(client: Client, mock_openai: MockOpenAI) -> None:
    def add(a: int, b: int = 1) -> int:
        """Add two numbers.

        Long description ignored."""
        return a + b

    built = tool.from_function(add)
    assert built.build()["parameters"] == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a"],
    }
    agent = client.agent({"model": "gpt", "tools": [built]})
    mock_openai.script(B.reply(tool_calls=[call("add", {"a": 2, "b": 40})]))
    assert agent.send_message("2+40?").text == "tool said: 42"


def test_tool_builder_json_schema() -> None:
    spec = (
        tool("deploy")
        .describe("Deploy")
        .param("env", enum_of(["staging", "prod"]))
        .param("replicas", optional(integer("how many")))
        .require_approval()
        .build()
    )
    assert spec["require_approval"] is True and spec["type"] == "client"
    assert spec["parameters"]["required"] == ["env"]
    assert spec["parameters"]["properties"]["env"] == {"type": "string", "enum": ["staging", "prod"]}
    assert app_tool("t", "tests/echo").input({"times": 2}).build()["input"] == {"times": 2}
    assert webhook_tool("w", "http://x").secret("S").build()["secret"] == "S"
    assert agent_tool("a", "acme/sub")._spec["agent"] == "acme/sub"
    assert internal_tools().plan().memory().code_execution(True).build() == {
        "plan": True,
        "memory": True,
        "code_execution": True,
    }


# -- bad input ----------------------------------------------------------------------------------


def test_invalid_tool_schema_is_422(client: Client) -> None:
    bad = {"name": "t", "parameters": {"type": "object", "properties": {"x": {"type": "strnig"}}}}
    with pytest.raises(ValidationError) as err:
        client.agents.create("acme/bad", {"model": "gpt", "tools": [bad]})
    assert err.value.code == "invalid_tool_schema"
    with pytest.raises(ValidationError) as err2:
        client.agent({"model": "gpt", "tools": [{"name": "t", "parameters": {"type": "string"}}]}).send_message("x")
    assert err2.value.code == "invalid_tool_schema"


def test_web_search_without_provider_is_a_clear_error(client: Client) -> None:
    with pytest.raises(ValidationError) as err:
        client.agent({"model": "gpt", "internal_tools": {"web_search": True}}).send_message("search")
    assert err.value.code == "web_search_unavailable" and "no web search provider" in err.value.message


def test_looping_model_stops_at_max_steps(client: Client, mock_openai: MockOpenAI) -> None:
    agent = client.agent({"model": "gpt", "max_steps": 3, "internal_tools": {"plan": True}})
    loop = B.reply(tool_calls=[call("plan", {"todos": [{"title": "again"}]})])
    mock_openai.script(loop, loop, loop, loop, loop)
    reply = agent.send_message("loop forever")
    assert reply.status == "max_steps_reached"
    assert len(reply.chat["steps"]) == 3 and len(mock_openai.requests) == 3


# -- server-side tools --------------------------------------------------------------------------


def test_app_tool_runs_a_real_app(client: Client, mock_openai: MockOpenAI) -> None:
    echo = app_tool("echo", "tests/echo@1.0.0").describe("Repeat").param("text", string()).input({"times": 2})
    agent = client.agent({"model": "gpt", "tools": [echo.build()]})
    mock_openai.script(B.reply(tool_calls=[call("echo", {"text": "ab"})]))
    reply = agent.send_message("echo ab twice")
    assert reply.status == "idle"
    rec = reply.chat["tool_calls"][0]
    assert rec["result"]["text"] == "abab" and rec["task_id"]
    assert client.tasks.get(rec["task_id"]).status == "completed"


def test_agent_tool_delegates_to_a_sub_agent(client: Client, mock_openai: MockOpenAI) -> None:
    client.agents.create("acme/sub", {"model": "gpt", "system_prompt": "I am the sub-agent"})
    main = client.agent({"model": "gpt", "tools": [agent_tool("ask_sub", "acme/sub@latest").build()]})
    mock_openai.script(B.reply(tool_calls=[call("ask_sub", {"message": "research this"})]))
    reply = main.send_message("delegate")
    rec = reply.chat["tool_calls"][0]
    assert rec["result"]["answer"] == "echo: research this"
    sub_chat = client.request("GET", f"/v1/chats/{rec['sub_chat_id']}")
    assert sub_chat["parent_id"] == reply.chat_id and sub_chat["depth"] == 1
    assert mock_openai.requests[1]["json"]["messages"][0]["content"] == "I am the sub-agent"


def test_sub_agent_depth_limit(client: Client, mock_openai: MockOpenAI) -> None:
    main = client.agent({"model": "gpt", "max_depth": 0, "tools": [agent_tool("ask_sub", "acme/sub@latest").build()]})
    client.agents.create("acme/sub", {"model": "gpt"})
    mock_openai.script(B.reply(tool_calls=[call("ask_sub", {"message": "x"})]))
    reply = main.send_message("delegate")
    assert reply.chat["tool_calls"][0]["result"]["error"] == "max_depth"


class SignedReceiver:
    """A local tool endpoint that answers 401 unless the HMAC signature verifies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                ok = verify(TOOL_SECRET, body, self.headers.get(SIGNATURE_HEADER, ""))
                payload = json.dumps({"ok": True, "sum": sum(json.loads(body)["arguments"]["nums"])} if ok else {})
                if ok:
                    receiver.bodies.append(json.loads(body))
                self.send_response(200 if ok else 401)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = LoopbackServer(Handler).start()
        self.url = f"{self.server.url}/tool"


def test_webhook_tool_is_signed(client: Client, mock_openai: MockOpenAI) -> None:
    receiver = SignedReceiver()
    try:
        good = webhook_tool("summer", receiver.url).secret("TOOL_SECRET").param("nums", {"type": "array"}).build()
        agent = client.agent({"model": "gpt", "tools": [good]})
        mock_openai.script(B.reply(tool_calls=[call("summer", {"nums": [1, 2, 3]})]))
        reply = agent.send_message("sum")
        assert reply.chat["tool_calls"][0]["result"] == {"ok": True, "sum": 6}
        assert receiver.bodies[0]["tool"] == "summer"
        missing = webhook_tool("summer", receiver.url).secret("NO_SUCH").param("nums", {"type": "array"}).build()
        agent2 = client.agent({"model": "gpt", "tools": [missing]})
        mock_openai.script(B.reply(tool_calls=[call("summer", {"nums": [1]})]))
        assert agent2.send_message("sum").chat["tool_calls"][0]["result"]["error"] == "secret_not_found"
    finally:
        receiver.server.stop()


def test_code_execution_result_and_limits(client: Client, mock_openai: MockOpenAI) -> None:
    agent = client.agent({"model": "gpt", "internal_tools": {"code_execution": True}})
    codes = {
        "ok": "import os; print(sum(range(10)), os.getcwd().startswith('/tmp'))",
        "loop": "while True: pass",
        "bomb": "x = bytearray(2 * 1024**3)",
        "net": "import socket; socket.create_connection(('1.1.1.1', 80))",
    }
    mock_openai.script(
        B.reply(tool_calls=[call("code_execution", {"code": code}, f"call_{key}") for key, code in codes.items()])
    )
    reply = agent.send_message("run these")
    results = {c["id"]: c["result"] for c in reply.chat["tool_calls"]}
    assert results["call_ok"]["stdout"] == "45 True\n" and results["call_ok"]["ok"] is True
    assert results["call_loop"]["killed"] == "cpu_time"
    assert results["call_bomb"]["killed"] == "memory"
    assert results["call_net"]["killed"] == "network"
    assert reply.status == "idle"


def test_plan_and_memory_internal_tools(client: Client, mock_openai: MockOpenAI) -> None:
    cfg = {"model": "gpt", "internal_tools": internal_tools().plan().memory().build()}
    first = client.agent(cfg, user="ann")
    mock_openai.script(
        B.reply(
            tool_calls=[
                call("plan", {"todos": [{"title": "a"}, {"title": "b", "done": True}]}, "call_p"),
                call("memory", {"action": "set", "key": "color", "value": "teal"}, "call_m"),
            ]
        )
    )
    reply = first.send_message("remember")
    assert reply.chat["plan"] == [{"title": "a", "done": False}, {"title": "b", "done": True}]
    assert "Current plan" in mock_openai.requests[-1]["json"]["messages"][0]["content"]
    # ad-hoc agents keep memory per chat; templates per agent + user
    client.agents.create("acme/mem", cfg)
    mock_openai.script(B.reply(tool_calls=[call("memory", {"action": "set", "key": "k", "value": 7})]))
    client.agent("acme/mem", user="ann").send_message("store")
    mock_openai.script(B.reply(tool_calls=[call("memory", {"action": "get", "key": "k"})]))
    got = client.agent("acme/mem@latest", user="ann").send_message("fetch")
    assert got.chat["tool_calls"][0]["result"] == {"key": "k", "value": 7, "found": True}
    mock_openai.script(B.reply(tool_calls=[call("memory", {"action": "get", "key": "k"})]))
    other = client.agent("acme/mem", user="bob").send_message("fetch")
    assert other.chat["tool_calls"][0]["result"]["found"] is False


# -- approval -----------------------------------------------------------------------------------


def test_approval_approved_and_denied(client: Client, mock_openai: MockOpenAI) -> None:
    deploy = app_tool("deploy", "tests/echo@1.0.0").param("text", string()).require_approval().build()
    agent = client.agent({"model": "gpt", "tools": [deploy]})
    mock_openai.script(B.reply(tool_calls=[call("deploy", {"text": "v1"}, "call_d1")]))
    paused = agent.send_message("deploy v1")
    assert paused.status == "awaiting_approval"
    done = agent.approve("call_d1", by="alice")
    rec = done.chat["tool_calls"][0]
    assert done.status == "idle" and rec["approval"]["approved"] is True and rec["approval"]["by"] == "alice"
    assert rec["result"]["text"] == "v1"
    with pytest.raises(ConflictError) as err:
        agent.approve("call_d1")
    assert err.value.code == "approval_not_pending"

    mock_openai.script(B.reply(tool_calls=[call("deploy", {"text": "v2"}, "call_d2")]))
    assert agent.send_message("deploy v2").status == "awaiting_approval"
    denied = agent.deny("call_d2", reason="not today", by="bob")
    rec2 = denied.chat["tool_calls"][-1]
    assert rec2["approval"] == {**rec2["approval"], "approved": False, "by": "bob", "reason": "not today"}
    assert rec2["result"]["error"] == "denied"
    assert denied.text is not None and "not today" in denied.text  # the model saw the denial
    assert denied.status == "idle"


def test_approval_gated_client_tool(client: Client, mock_openai: MockOpenAI) -> None:
    pay = tool("pay").param("amount", integer()).require_approval().build()
    agent = client.agent({"model": "gpt", "tools": [pay]})
    mock_openai.script(B.reply(tool_calls=[call("pay", {"amount": 5}, "call_pay")]))
    assert agent.send_message("pay 5").status == "awaiting_approval"
    reply = agent.approve("call_pay", on_tool_call=lambda c: {"paid": c["arguments"]["amount"]})
    assert reply.status == "idle" and reply.text == 'tool said: {"paid":5}'


# -- skills and streaming -----------------------------------------------------------------------


def test_skill_loaded_on_demand(client: Client, mock_openai: MockOpenAI) -> None:
    skills = [{"name": "haiku", "description": "Write haiku", "content": "Five, seven, five syllables."}]
    agent = client.agent({"model": "gpt", "system_prompt": "You are a poet.", "skills": skills})
    mock_openai.script(B.reply(tool_calls=[call("load_skill", {"name": "haiku"})]))
    reply = agent.send_message("a haiku please")
    system = mock_openai.requests[0]["json"]["messages"][0]["content"]
    assert "haiku: Write haiku" in system and "Five, seven" not in system
    assert reply.chat["tool_calls"][0]["result"]["content"] == "Five, seven, five syllables."
    assert "Five, seven, five" in mock_openai.requests[1]["json"]["messages"][-1]["content"]


def test_streaming_deltas_and_tool_events_in_order(client: Client, mock_openai: MockOpenAI) -> None:
    agent = client.agent({"model": "gpt", "tools": [tool("lookup").param("q", string()).build()]})
    mock_openai.script(
        B.reply(content="Let me check.", tool_calls=[call("lookup", {"q": "x"}, "call_s")]),
        B.reply(content="the answer is forty two"),
    )
    events: list[dict[str, Any]] = []
    reply = agent.send_message("q", on_message=events.append, on_tool_call=lambda c: "42")
    kinds = [e["type"] for e in events]
    assert kinds.index("tool_call") < kinds.index("awaiting_tool_result")
    text = "".join(e["content"] for e in events if e["type"] == "delta")
    assert text == "Let me check.the answer is forty two"
    assert kinds[-1] == "message" and events[-1]["message"]["content"] == "the answer is forty two"
    assert reply.text == "the answer is forty two"
    streamed = list(client.agent({"model": "gpt"}).stream_messages("hi you"))
    assert "".join(e.get("content", "") for e in streamed if e["type"] == "delta") == "echo: hi you"
    assert streamed[-1]["type"] == "done" and streamed[-1]["chat"]["status"] == "idle"


def test_chat_routes_answer_404(client: Client) -> None:
    with pytest.raises(NotFoundError) as err:
        client.request("GET", "/v1/chats/nope")
    assert err.value.code == "chat_not_found"


async def test_async_agent_twin_and_parallel_tools(
    agents_config: Path, tmp_path: Path, mock_openai: MockOpenAI
) -> None:
    from runyard import AsyncClient
    from runyard.config import load_config

    config = load_config(agents_config)
    config.storage.url = f"sqlite+aiosqlite:///{tmp_path / 'async.db'}"
    config.files.dir = str(tmp_path / "files")
    async with AsyncClient.embedded(config, max_retries=0) as client:
        agent = client.agent(
            {
                "model": "gpt",
                "internal_tools": {"code_execution": True},
                "tools": [tool("ask").param("q", string()).build()],
            }
        )
        sleep = "import time; time.sleep(2.0); print('slept')"
        mock_openai.script(
            B.reply(tool_calls=[call("code_execution", {"code": sleep}, f"call_{i}") for i in range(3)]),
            B.reply(tool_calls=[call("ask", {"q": "ok?"}, "call_ask")]),
        )

        async def answer(c: dict[str, Any]) -> str:
            return "yes"

        started = time.monotonic()
        reply = await agent.send_message("go", on_tool_call=answer)
        assert time.monotonic() - started < 4.5  # three 2 s tools ran side by side (in turn: 6 s)
        assert [c["result"]["stdout"] for c in reply.chat["tool_calls"][:3]] == ["slept\n"] * 3
        assert reply.text == "tool said: yes"
        chat = await agent.get_chat()
        assert len(chat["steps"]) == 3
        assert (await agent.reset()).chat["messages"] == []


def test_attachments_become_image_parts(client: Client, mock_openai: MockOpenAI) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    uploaded = client.files.upload(png, filename="pic.png", content_type="image/png")
    text_file = client.files.upload(b"plain notes", filename="notes.txt", content_type="text/plain")
    agent = client.agent({"model": "gpt"})
    reply = agent.send_message("what is this?", files=[png, uploaded, text_file.uri, "https://example.com/cat.jpg"])
    assert reply.text is not None and reply.text.startswith("echo: what is this?")
    parts = mock_openai.requests[-1]["json"]["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "what is this?"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2]["image_url"]["url"] == parts[1]["image_url"]["url"]  # the stored file, inlined
    assert parts[3]["type"] == "text" and "notes.txt" in parts[3]["text"]
    assert parts[4] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}


class SkillServer:
    """Serves one skill document over HTTP and counts the fetches."""

    def __init__(self, text: str) -> None:
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = text.encode()
                self.send_response(200)
                self.send_header("content-type", "text/markdown")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = LoopbackServer(Handler).start()
        self.url = f"{self.server.url}/skill.md"


def test_skill_from_url_is_fetched_once(client: Client, mock_openai: MockOpenAI) -> None:
    server = SkillServer("# Tables\nAlways use markdown tables.")
    try:
        cfg = {"model": "gpt", "skills": [{"name": "tables", "description": "Format tables", "url": server.url}]}
        for _ in range(2):
            mock_openai.script(B.reply(tool_calls=[call("load_skill", {"name": "tables"})]))
            reply = client.agent(cfg).send_message("make a table")
            assert reply.chat["tool_calls"][0]["result"]["content"].startswith("# Tables")
        assert server.hits == 1
        mock_openai.script(B.reply(tool_calls=[call("load_skill", {"name": "nope"})]))
        assert client.agent(cfg).send_message("x").chat["tool_calls"][0]["result"]["error"] == "unknown_skill"
    finally:
        server.server.stop()


def test_webhook_url_guard_refuses_private_addresses(
    agents_config: Path, tmp_path: Path, mock_openai: MockOpenAI
) -> None:
    with embedded_client(agents_config, tmp_path, webhooks={"allow_private_webhooks": False}) as guarded:
        hook = webhook_tool("hook", "http://127.0.0.1:9/tool").param("x", string()).build()
        mock_openai.script(B.reply(tool_calls=[call("hook", {"x": "y"})]))
        reply = guarded.agent({"model": "gpt", "tools": [hook]}).send_message("call it")
        assert reply.chat["tool_calls"][0]["result"]["error"] == "url_not_allowed"


def test_image_generation_routes_to_an_app(client: Client, mock_openai: MockOpenAI) -> None:
    tools = internal_tools().image_generation({"app": "tests/image-gen@1.0.0", "input": {"size": "big"}}).build()
    agent = client.agent({"model": "gpt", "internal_tools": tools})
    mock_openai.script(B.reply(tool_calls=[call("image_generation", {"prompt": "a red fox"})]))
    reply = agent.send_message("draw a fox")
    result = reply.chat["tool_calls"][0]["result"]
    assert isinstance(result, str) and result.startswith("runyard://files/"), result
    assert client.files.get(result).filename == "big.png"
    assert client.files.read(result) == b"\x89PNG\r\n\x1a\na red fox"
    assert mock_openai.requests[0]["json"]["tools"][0]["function"]["name"] == "image_generation"
    with pytest.raises(ValidationError) as err:
        client.agent({"model": "gpt", "internal_tools": {"image_generation": {}}}).send_message("x")
    assert err.value.code == "invalid_internal_tool"
