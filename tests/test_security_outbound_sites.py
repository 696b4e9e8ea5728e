"""Every server-side fetch connects through the URL guard, to the address it checked: skills by
URL, webhook tools and the workflow ``http`` block. The rebinding resolver (the test's own) answers
a public address to the early check and loopback afterwards; the loopback server records whether
anything reached it. Webhook tools are signed the Standard Webhooks way, as task webhooks are."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runyard.agents.config import ToolSpec
from runyard.apps import AppContext
from runyard.config import load_config
from runyard.gateway import Gateway
from runyard.webhooks import verify
from runyard.workflows import Workflow
from runyard.workflows.blocks import BlockServices
from runyard.workflows.engine import Run
from runyard.workflows.store import WorkflowStore
from test_security_outbound import LoopbackServer, RebindingResolver, loopback  # noqa: F401  (a fixture)

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdG9vbHM="


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    (tmp_path / "runyard.toml").write_text(f"""
[storage]
url = "sqlite+aiosqlite:///{tmp_path / "runyard.db"}"

[files]
dir = "{tmp_path / "files"}"

[webhooks]
secret = "{SECRET}"
""")
    gateway = Gateway(load_config(tmp_path / "runyard.toml"))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.aclose()


def _chat(**config: Any) -> dict[str, Any]:
    return {"id": "chat1", "config": {"model": "dummy::echo", **config}, "api_key_id": None}


async def test_webhook_tools_connect_to_the_checked_address_only(gw: Gateway, loopback: LoopbackServer) -> None:  # noqa: F811
    tools = gw.agents.loop.tools
    tools.resolver = resolver = RebindingResolver()
    spec = ToolSpec(name="hook", type="webhook", url=f"http://rebind.test:{loopback.port}/tool", timeout_s=2)
    with pytest.raises(Exception):  # noqa: B017  (the connection is refused, whichever way the client says it)
        await tools.run(_chat(), {"id": "c1", "name": "hook", "arguments": {}}, spec, None)
    assert loopback.hits == []
    assert len(resolver.calls) >= 2  # the early check, then the connection's own checked lookup


async def test_skills_by_url_connect_to_the_checked_address_only(gw: Gateway, loopback: LoopbackServer) -> None:  # noqa: F811
    tools = gw.agents.loop.tools
    tools.resolver = resolver = RebindingResolver()
    chat = _chat(skills=[{"name": "s", "url": f"http://rebind.test:{loopback.port}/skill.md"}])
    with pytest.raises(Exception):  # noqa: B017
        await tools.run(chat, {"id": "c1", "name": "load_skill", "arguments": {"name": "s"}}, None, None)
    assert loopback.hits == []
    assert len(resolver.calls) >= 2


async def test_http_blocks_connect_to_the_checked_address_only(gw: Gateway, loopback: LoopbackServer) -> None:  # noqa: F811
    resolver = RebindingResolver()
    services = BlockServices(
        ai=gw.ai, agents=gw.agents, tasks=gw.tasks, files=gw.files, modules=[], allow_private=False, resolver=resolver
    )
    url = f"http://rebind.test:{loopback.port}/data"
    flow = Workflow("acme/fetch").block("call", "http", url=url).output(x="{{ call }}").to_dict()
    ctx = AppContext(task_id="t1", app="runyard/workflow")
    run = Run(services, WorkflowStore.check(flow), {}, ctx, lambda _event: None, stream=False, selected=None)
    result = await run.execute()
    assert result["success"] is False
    assert loopback.hits == []
    assert len(resolver.calls) >= 2


class Receiver:
    """A real HTTP server on 127.0.0.1 that keeps each request's headers and body."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                owner.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "12")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tool"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


async def test_webhook_tools_are_signed_the_standard_webhooks_way(gw: Gateway, receiver: Receiver) -> None:
    tools = gw.agents.loop.tools
    tools.allow_private = True  # the receiver is on loopback
    spec = ToolSpec(name="hook", type="webhook", url=receiver.url, timeout_s=5)
    await tools.run(_chat(), {"id": "c1", "name": "hook", "arguments": {"n": 1}}, spec, None)
    headers, body = receiver.got[-1]
    payload = verify(SECRET, body, headers)  # raises unless signed with the webhook secret
    assert payload == {"tool": "hook", "call_id": "c1", "arguments": {"n": 1}}
    assert headers["x-runyard-event"] == "tool.call"
    tools.secrets = {"TOOL": "per-tool-secret"}
    named = spec.model_copy(update={"secret": "TOOL"})
    await tools.run(_chat(), {"id": "c2", "name": "hook", "arguments": {}}, named, None)
    headers, body = receiver.got[-1]
    assert verify("per-tool-secret", body, headers)["call_id"] == "c2"
    with pytest.raises(Exception):  # noqa: B017
        verify(SECRET, body, headers)
