"""Issue 20 (inference.sh): what the SDK doc's users tripped on, driven through the real
``inferencesh`` 0.36 client against ``runyard serve`` (mock upstreams are loopback HTTP servers)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard import Client
from runyard.webhooks import verify
from support.gateway import GatewayProcess
from support.loopback import LoopbackServer
from support.openai_mock import B, MockOpenAI
from support.tasks_e2e import app_env
from test_agents import TOOL_SECRET, agents_toml

inferencesh = pytest.importorskip("inferencesh")

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """A loopback HTTP server: a SearXNG-like ``GET /search`` and a webhook ``POST /hook``, recording requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                with recorder.lock:
                    recorder.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                q = httpx.URL(self.path).params.get("q", "")
                results = [{"title": f"{q} {i}", "url": f"https://example.org/{i}", "content": "s"} for i in range(9)]
                self._answer({"query": q, "results": results})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with recorder.lock:
                    recorder.requests.append(
                        {"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body}
                    )
                self._answer({"delivered": True})

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = LoopbackServer(Handler)
        self.url = self.server.url


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    with rec.server:
        yield rec


def doc_toml(root: Path, openai_url: str, search_url: str | None) -> str:
    """The agents test config, plus a default app namespace, a ``private`` pool, agent aliases and
    (when given) a web search provider."""
    text = agents_toml(root, openai_url).replace(
        'modules = ["apps.demo", "apps.agent_images"]',
        'modules = ["apps.demo", "apps.agent_images"]\ndefault_namespace = "tests"',
    )
    text += '\n[pools.private]\nconcurrency = 2\n\n[agents.aliases."my-org/researcher"]\nstable = 1\n'
    if search_url:
        text += f'\n[agents.web_search]\nkind = "searxng"\nurl = "{search_url}"\nmax_results = 3\n'
    return text


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, _mock_openai_server: MockOpenAI, recorder: Recorder
) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("infsh-doc")
    path = root / "runyard.toml"
    path.write_text(doc_toml(root, _mock_openai_server.url, recorder.url))
    proc = GatewayProcess(path, env=app_env()).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def infsh(server: GatewayProcess) -> Any:
    return inferencesh.inference(api_key="unused", base_url=server.url + "/inferencesh")


def tool_messages(chat: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in chat["messages"] if m["role"] == "tool"]


# -- 1. requirements ------------------------------------------------------------------------------


def test_unmet_requirements_raise_the_clients_requirements_error(infsh: Any) -> None:
    from inferencesh import RequirementsNotMetError

    with pytest.raises(RequirementsNotMetError) as err:
        infsh.run({"app": "tests/needs-secrets", "input": {}})
    assert err.value.status_code == 412
    assert {(e.type, e.key) for e in err.value.errors} == {("secret", "TEST_TOKEN"), ("integration", "slack")}
    assert all(e.message for e in err.value.errors)


# -- 2. temperature / max_tokens ------------------------------------------------------------------


def test_ad_hoc_temperature_and_max_tokens_reach_the_model(infsh: Any, mock_openai: MockOpenAI) -> None:
    agent = infsh.agent({"core_app": {"ref": "gpt"}, "system_prompt": "hi", "temperature": 0.7, "max_tokens": 4096})
    agent.send_message("What is 25 * 4?", on_message=lambda m: None)
    sent = mock_openai.requests[0]["json"]
    assert sent["temperature"] == 0.7 and sent["max_tokens"] == 4096
    assert agent.get_chat()["output"] == "echo: What is 25 * 4?"


# -- 3. app tools ---------------------------------------------------------------------------------


def test_app_tool_takes_its_parameters_from_the_apps_input_schema(
    infsh: Any, mock_openai: MockOpenAI, server: GatewayProcess
) -> None:
    from inferencesh import app_tool, string

    image_gen = (
        app_tool("generate_image", "tests/image-gen@latest")
        .describe("Generate an image")
        .param("prompt", string("Image description"))  # 0.36 does not send this
        .input({"size": "big"})
        .build()
    )
    mock_openai.script(B.reply(tool_calls=[{"id": "c1", "name": "generate_image", "arguments": {"prompt": "fox"}}]))
    agent = infsh.agent({"core_app": {"ref": "gpt"}, "tools": [image_gen]})
    agent.send_message("draw a fox", on_message=lambda m: None)
    offered = mock_openai.requests[0]["json"]["tools"][0]["function"]["parameters"]
    assert offered["required"] == ["prompt"] and set(offered["properties"]) == {"prompt"}  # size is fixed
    chat = agent.get_chat()
    uri = tool_messages(chat)[0]["content"]  # the app's output: the image file
    assert uri.startswith("runyard://files/") and chat["status"] == "idle"
    content = httpx.get(f"{server.url}/v1/files/{uri.rsplit('/', 1)[1]}/content").content
    assert content.endswith(b"fox")  # the model's prompt reached the app


# -- 4. agent tools -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def researcher_template(server: GatewayProcess) -> str:
    """``my-org/researcher`` version 1 (``@stable`` by ``[agents.aliases]``)."""
    with Client(base_url=server.url, max_retries=0) as rc:
        return str(rc.agents.create("my-org/researcher", {"model": "gpt", "system_prompt": "You research."})["id"])


@pytest.mark.parametrize("label", ["v1", "latest", "stable", "1"])
def test_agent_tool_runs_the_sub_agent_server_side(
    label: str, infsh: Any, researcher_template: str, mock_openai: MockOpenAI
) -> None:
    from inferencesh import agent_tool, string

    researcher = (
        agent_tool("research", f"my-org/researcher@{label}")
        .describe("Research a topic")
        .param("topic", string("Topic to research"))
        .build()
    )
    mock_openai.script(
        B.reply(tool_calls=[{"id": "r1", "name": "research", "arguments": {"message": "tides"}}]),
        B.reply("Tides follow the moon."),  # the sub-agent's answer
    )
    seen: list[Any] = []
    agent = infsh.agent({"core_app": {"ref": "gpt"}, "tools": [researcher]})
    agent.send_message("research tides", on_tool_call=seen.append)
    assert seen == []  # not handed to the client
    chat = agent.get_chat()
    assert json.loads(tool_messages(chat)[0]["content"])["answer"] == "Tides follow the moon."
    assert mock_openai.requests[1]["json"]["messages"][0] == {"role": "system", "content": "You research."}
    assert chat["status"] == "idle" and "Tides follow the moon." in chat["output"]


def test_unknown_agent_tool_label_is_a_clear_error(
    infsh: Any, researcher_template: str, mock_openai: MockOpenAI
) -> None:
    from inferencesh import agent_tool

    mock_openai.script(B.reply(tool_calls=[{"id": "r2", "name": "research", "arguments": {"message": "x"}}]))
    agent = infsh.agent({"core_app": {"ref": "gpt"}, "tools": [agent_tool("research", "my-org/researcher@v9").build()]})
    agent.send_message("go", on_message=lambda m: None)
    result = json.loads(tool_messages(agent.get_chat())[0]["content"])
    assert result["error"] == "agent_not_found"


# -- 5. webhook tools -----------------------------------------------------------------------------


def test_webhook_tool_posts_the_call_signed(infsh: Any, mock_openai: MockOpenAI, recorder: Recorder) -> None:
    from inferencesh import string, webhook_tool

    notify = (
        webhook_tool("slack", recorder.url + "/hook")
        .describe("Send Slack notification")
        .secret("TOOL_SECRET")
        .param("channel", string("Channel"))
        .param("message", string("Message"))
        .build()
    )
    args = {"channel": "#ops", "message": "deployed"}
    mock_openai.script(B.reply(tool_calls=[{"id": "h1", "name": "slack", "arguments": args}]))
    before = len(recorder.requests)
    agent = infsh.agent({"core_app": {"ref": "gpt"}, "tools": [notify]})
    agent.send_message("tell ops", on_message=lambda m: None)
    chat = agent.get_chat()
    posts = [r for r in recorder.requests[before:] if r["method"] == "POST"]
    assert len(posts) == 1 and posts[0]["path"] == "/hook"
    assert json.loads(posts[0]["body"]) == {"tool": "slack", "call_id": "h1", "arguments": args}
    assert verify(TOOL_SECRET, posts[0]["body"], posts[0]["headers"])
    assert json.loads(tool_messages(chat)[0]["content"]) == {"delivered": True}
    assert mock_openai.requests[0]["json"]["tools"][0]["function"]["parameters"]["required"] == ["channel", "message"]


# -- 6. internal tools ----------------------------------------------------------------------------


def test_image_generation_with_an_app_ref_returns_the_image(infsh: Any, mock_openai: MockOpenAI) -> None:
    internal = {"image_generation": {"enabled": True, "app_ref": "tests/image-gen@1.0.0"}}
    mock_openai.script(B.reply(tool_calls=[{"id": "i1", "name": "image_generation", "arguments": {"prompt": "owl"}}]))
    agent = infsh.agent({"core_app": {"ref": "gpt"}, "internal_tools": internal})
    agent.send_message("an owl", on_message=lambda m: None)
    assert mock_openai.requests[0]["json"]["tools"][0]["function"]["name"] == "image_generation"
    assert tool_messages(agent.get_chat())[0]["content"].startswith("runyard://files/")


def test_web_search_goes_through_the_configured_provider(
    infsh: Any, mock_openai: MockOpenAI, recorder: Recorder
) -> None:
    mock_openai.script(B.reply(tool_calls=[{"id": "w1", "name": "web_search", "arguments": {"query": "moon"}}]))
    before = len(recorder.requests)
    agent = infsh.agent({"core_app": {"ref": "gpt"}, "internal_tools": {"web_search": True}})
    agent.send_message("search the moon", on_message=lambda m: None)
    gets = [r for r in recorder.requests[before:] if r["method"] == "GET"]
    assert len(gets) == 1 and gets[0]["path"].startswith("/search?") and "format=json" in gets[0]["path"]
    result = json.loads(tool_messages(agent.get_chat())[0]["content"])
    assert [r["title"] for r in result["results"]] == ["moon 0", "moon 1", "moon 2"]  # max_results = 3


def test_web_search_without_a_provider_is_not_offered_and_logged(
    tmp_path: Path, _mock_openai_server: MockOpenAI, mock_openai: MockOpenAI
) -> None:
    path = tmp_path / "runyard.toml"
    path.write_text(doc_toml(tmp_path, _mock_openai_server.url, None))
    proc = GatewayProcess(path, env=app_env()).start()
    try:
        infsh = inferencesh.inference(api_key="unused", base_url=proc.url + "/inferencesh")
        agent = infsh.agent({"core_app": {"ref": "gpt"}, "internal_tools": {"web_search": True, "plan": True}})
        agent.send_message("search", on_message=lambda m: None)
        offered = [t["function"]["name"] for t in mock_openai.requests[0]["json"]["tools"]]
        assert offered == ["plan"]
        assert agent.get_chat()["status"] == "idle"
    finally:
        proc.stop()
    assert "no [agents.web_search] provider is configured" in proc.log()


# -- 7. tool result on a call awaiting approval ---------------------------------------------------


def test_tool_result_on_a_call_awaiting_approval_resumes_the_chat(infsh: Any, mock_openai: MockOpenAI) -> None:
    from inferencesh import string, tool
    from inferencesh.agent import pending_approvals

    greet = tool("greet").describe("Greets").param("name", string("Name")).require_approval().build()
    mock_openai.script(B.reply(tool_calls=[{"id": "g1", "name": "greet", "arguments": {"name": "Ada"}}]))
    agent = infsh.agent({"core_app": {"ref": "gpt"}, "tools": [greet]})
    agent.send_message("Delete all temp files", on_message=lambda m: None)
    pending = pending_approvals(agent.get_chat())
    assert [p.tool_name for p in pending] == ["greet"]
    agent.submit_tool_result(pending[0].tool_invocation_id, {"error": "Denied by user"})
    chat = agent.get_chat()
    assert chat["status"] == "idle" and "Denied by user" in chat["output"]
    with pytest.raises(Exception, match="already has a result"):  # a second answer is a clear 409
        agent.submit_tool_result(pending[0].tool_invocation_id, "again")


# -- 8. bare app names, infra ---------------------------------------------------------------------


def test_bare_app_names_resolve_in_the_default_namespace(infsh: Any) -> None:
    done = infsh.run({"app": "echo@1.0.0", "input": {"text": "hi", "times": 2}})
    assert done["output"]["text"] == "hihi"
    from inferencesh.models.errors import APIError

    with pytest.raises(APIError) as err:
        infsh.run({"app": "no-such-app", "input": {}})
    assert err.value.status_code == 404 and err.value.code == "app_not_found"


def test_infra_picks_a_pool(infsh: Any, server: GatewayProcess) -> None:
    private = infsh.run({"app": "echo@1.0.0", "input": {"text": "p"}, "infra": "private"})
    cloud = infsh.run({"app": "echo@1.0.0", "input": {"text": "c"}, "infra": "cloud"})
    pools = [httpx.get(f"{server.url}/v1/tasks/{t['id']}").json()["pool"] for t in (private, cloud)]
    assert pools == ["private", "shared"]  # no [pools.cloud]: the app's own pool
    from inferencesh.models.errors import APIError

    with pytest.raises(APIError) as err:
        infsh.run({"app": "echo@1.0.0", "input": {"text": "x"}, "infra": "moon"})
    assert err.value.status_code == 400 and err.value.code == "invalid_infra"


def test_bare_names_without_a_default_namespace_take_the_one_app_of_that_name(tmp_path: Path) -> None:
    from runyard.config import parse_config
    from runyard.errors import NotFoundError
    from runyard.services.apps import AppRegistry

    registry = AppRegistry(parse_config({"apps": {"modules": ["apps.demo", "apps.agent_images"]}}))
    registry.load()
    assert registry.resolve("image-gen").ref == "tests/image-gen@1.0.0"
    assert registry.resolve("echo@1.0.0").ref == "tests/echo@1.0.0"
    registry.register(replace(registry.resolve("image-gen"), name="other/image-gen"))
    with pytest.raises(NotFoundError) as err:
        registry.resolve("image-gen")
    assert err.value.code == "ambiguous_app" and "tests/image-gen" in err.value.message
