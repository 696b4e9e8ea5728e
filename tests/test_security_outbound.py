"""Finding 3: the URL guard checks the address it connects to (no DNS-rebinding window) and knows
every wrapped spelling of a private address (IPv4-mapped, 6to4, NAT64, Teredo) and the IANA
special-purpose ranges. The rebinding resolver is the test's own and only ever answers loopback
as its dangerous answer; the loopback server records whether anything reached it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.config import WebhooksConfig, load_config
from runyard.errors import RunyardError
from runyard.gateway import Gateway
from runyard.services.urlguard import (
    UnsafeURLError,
    check_url,
    guarded_session,
    guarded_transport,
    is_public_address,
)
from runyard.services.webhooks import WebhookSender

# A globally reachable address the resolver answers first; nothing here can reach it (no network),
# and a correct client never gets as far as the second answer, loopback.
PUBLIC = "2606:4700:4700::1111"


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 that counts every request it gets."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.hits.append(self.path)
                length = int(self.headers.get("content-length", "0"))
                if length:
                    self.rfile.read(length)
                self.send_response(200)
                self.send_header("content-length", "6")
                self.end_headers()
                self.wfile.write(b"secret")

            do_GET = do_POST = _answer

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


class RebindingResolver:
    """Answers ``PUBLIC`` the first time a name is asked for, loopback every time after."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [PUBLIC] if len(self.calls) == 1 else ["127.0.0.1"]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "169.254.169.254",
        "::ffff:169.254.169.254",  # IPv4-mapped
        "2002:a9fe:a9fe::",  # 6to4 wrapping 169.254.169.254 (the finding)
        "2002:7f00:1::1",  # 6to4 wrapping 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix wrapping 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 wrapping 127.0.0.1
        "64:ff9b:1::808:808",  # local-use NAT64 (RFC 8215): never global
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (obfuscated)
        "2001:0:a9fe:a9fe::1",  # Teredo, server 169.254.169.254
        "100.64.0.1",  # shared address space
        "192.0.0.8",  # IETF protocol assignments
        "198.18.0.1",  # benchmarking
        "240.0.0.1",  # reserved
        "fd00::1",  # unique local
        "fe80::1%eth0",  # link-local with a zone
        "::",
        "::1",
        "ff02::1",
        "100::1",  # discard-only
        "2001:db8::1",  # documentation
    ],
)
def test_private_addresses_in_every_spelling_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "2002:808:808::1", "64:ff9b::808:808"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "url",
    ["http://[2002:a9fe:a9fe::]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[::ffff:127.0.0.1]:80/", "http://0x7f.1/"],
)
async def test_check_url_refuses_wrapped_literals(url: str) -> None:
    with pytest.raises(UnsafeURLError) as err:
        await check_url(url)
    assert err.value.status == 400 and err.value.code in ("url_not_allowed", "unresolvable_url")


async def test_httpx_transport_connects_only_to_the_checked_address(loopback: LoopbackServer) -> None:
    resolver = RebindingResolver()
    url = f"http://rebind.test:{loopback.port}/latest/meta-data"
    await check_url(url, resolver=resolver)  # the early check: sees the public answer
    transport = guarded_transport(resolver=resolver)
    async with httpx.AsyncClient(transport=transport, timeout=2) as client:
        with pytest.raises((UnsafeURLError, httpx.TransportError)) as err:
            await client.get(url)  # the connection's own (second) lookup says loopback: refused
    assert isinstance(err.value, UnsafeURLError) and err.value.code == "url_not_allowed"
    assert loopback.hits == []


async def test_httpx_transport_refuses_a_loopback_literal(loopback: LoopbackServer) -> None:
    async with httpx.AsyncClient(transport=guarded_transport(), timeout=2) as client:
        with pytest.raises(UnsafeURLError):
            await client.get(f"http://127.0.0.1:{loopback.port}/")
    assert loopback.hits == []


async def test_aiohttp_session_pins_and_refuses_literals(loopback: LoopbackServer) -> None:
    import aiohttp

    resolver = RebindingResolver()
    await check_url(f"http://rebind.test:{loopback.port}/", resolver=resolver)
    async with guarded_session(resolver=resolver, timeout_s=2) as session:
        with pytest.raises(UnsafeURLError):
            await session.get(f"http://rebind.test:{loopback.port}/")
        with pytest.raises(aiohttp.ClientError):  # an IP literal: refused at the socket
            await session.get(f"http://127.0.0.1:{loopback.port}/")
        with pytest.raises(aiohttp.ClientError):
            await session.get(f"http://[::ffff:127.0.0.1]:{loopback.port}/")
    assert loopback.hits == []


async def test_file_inputs_are_fetched_from_the_checked_address(tmp_path: Path, loopback: LoopbackServer) -> None:
    (tmp_path / "runyard.toml").write_text(f"""
[storage]
url = "sqlite+aiosqlite:///{tmp_path / "runyard.db"}"

[files]
dir = "{tmp_path / "files"}"
""")
    gw = Gateway(load_config(tmp_path / "runyard.toml"))
    await gw.start()
    try:
        resolver = RebindingResolver()
        gw.files.resolver = resolver
        with pytest.raises(RunyardError) as err:
            await gw.files.ingest(f"http://rebind.test:{loopback.port}/secret.txt")
        assert err.value.status == 400
        assert loopback.hits == []
        assert len(resolver.calls) >= 2  # the check, then the connection's own checked lookup
    finally:
        await gw.aclose()


async def test_webhooks_are_delivered_to_the_checked_address_only(loopback: LoopbackServer) -> None:
    resolver = RebindingResolver()
    sender = WebhookSender(
        WebhooksConfig(secret="s", max_attempts=2, initial_backoff_s=0, timeout_s=2), resolver=resolver
    )
    try:
        assert not await sender.deliver(f"http://rebind.test:{loopback.port}/hook", {"id": "t", "status": "completed"})
    finally:
        await sender.aclose()
    assert loopback.hits == []


async def test_private_targets_still_reachable_when_allowed(loopback: LoopbackServer) -> None:
    async with httpx.AsyncClient(transport=guarded_transport(allow_private=True), timeout=2) as client:
        assert (await client.get(f"http://127.0.0.1:{loopback.port}/ok")).content == b"secret"
    async with guarded_session(allow_private=True, timeout_s=2) as session:
        async with session.get(f"http://localhost:{loopback.port}/ok") as resp:
            assert await resp.read() == b"secret"
    assert loopback.hits == ["/ok", "/ok"]
