"""ASGITransport and RetryTransport against real servers: uvicorn over TCP and in-process."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from runyard.client import ASGITransport, AsyncClient, RetryTransport
from runyard.client._transports import parse_retry_after
from runyard.errors import (
    APITimeoutError,
    ConnectionError,
    InternalServerError,
    InvalidRequestError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
)
from support.sdk_app import Target, live_target, wait_for

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(scope="module")
def targets() -> Iterator:
    with live_target() as factory:
        yield factory


@pytest.fixture(params=["uvicorn", "asgi"])
def target(request: pytest.FixtureRequest, targets) -> Target:
    return targets(request.param)


def key() -> str:
    return uuid.uuid4().hex


def fast_client(target: Target, *, max_retries: int = 2, timeout: float = 5.0, **kw) -> AsyncClient:
    """An AsyncClient on ``target`` with no backoff sleeping (unless Retry-After says so)."""
    retry = RetryTransport(target.transport(), max_retries=max_retries, initial_backoff=0.0, **kw)
    return AsyncClient(target.base_url, "sk-test", transport=retry, timeout=timeout)


# --------------------------------------------------------------------------- ASGITransport


async def test_asgi_scope_and_request_body(targets) -> None:
    target = targets("asgi")

    async def body() -> Iterator[bytes]:
        yield b'{"a":'
        await asyncio.sleep(0)
        yield b" 1}"

    async with httpx.AsyncClient(transport=ASGITransport(target.app), base_url="http://testserver") as http:
        r = await http.post("/echo/a%20b/c?x=1&y=%20", content=body(), headers={"X-Mixed-Case": "Yes"})
    data = r.json()
    assert r.status_code == 200
    assert data["method"] == "POST"
    assert data["path"] == "/echo/a b/c"
    assert data["raw_path"] == "/echo/a%20b/c"
    assert data["query_string"] == "x=1&y=%20"
    assert data["http_version"] == "1.1"
    assert data["scheme"] == "http"
    assert data["root_path"] == ""
    assert data["client"] == ["127.0.0.1", 123]
    assert data["server"] == ["127.0.0.1", 80]
    assert data["body"] == '{"a": 1}'
    headers = dict(data["headers"])
    assert headers["x-mixed-case"] == "Yes"
    assert all(k == k.lower() for k, _ in data["headers"])


async def test_response_streams_before_app_finishes(target: Target) -> None:
    """The first SSE event reaches the client while the app is still blocked on its gate."""
    k = key()
    async with httpx.AsyncClient(transport=target.transport(), base_url=target.base_url) as http:
        async with http.stream("GET", f"/sse/slow/{k}") as r:
            assert r.status_code == 200
            lines = r.aiter_lines()
            first = [line async for line in _take_until(lines, "Hel")]
            assert first[-1].startswith("data:")
            # The app marks "first-sent" after its yield returns (in uvicorn's thread that may land
            # just after the client reads the event); it cannot get further while the gate is shut.
            assert wait_for(lambda: target.state.markers[k] == ["first-sent"])
            target.state.gates[k].set()
            rest = [line async for line in lines]
    assert "data: [DONE]" in rest
    assert wait_for(lambda: target.state.markers[k] == ["first-sent", "gate-open", "finished"])


async def _take_until(lines, needle: str):
    async for line in lines:
        yield line
        if needle in line:
            return


async def test_early_close_stops_app(target: Target) -> None:
    k = key()
    async with httpx.AsyncClient(transport=target.transport(), base_url=target.base_url) as http:
        started = time.monotonic()
        async with http.stream("GET", f"/sse/hang/{k}") as r:
            async for chunk in r.aiter_bytes():
                if b"Hel" in chunk:
                    break
    assert wait_for(lambda: target.state.markers[k] == ["stopped:CancelledError"])
    assert time.monotonic() - started < 2


async def test_asgi_disconnect_is_signalled_via_receive() -> None:
    seen: list[str] = []

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect":
                return

    async with httpx.AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        async with http.stream("GET", "/") as r:
            assert await r.aiter_bytes().__anext__() == b"part"
    assert seen[-1] == "http.disconnect"
    assert seen[0] == "http.request"


async def test_asgi_receive_after_complete_response_is_disconnect() -> None:
    seen: list[str] = []
    done = asyncio.Event()

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        seen.append((await receive())["type"])  # like uvicorn: a finished exchange is over
        seen.append((await receive())["type"])
        done.set()

    async with httpx.AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        r = await http.get("/")
        assert r.status_code == 204
        await asyncio.wait_for(done.wait(), 2)
    assert seen == ["http.disconnect", "http.disconnect"]


async def test_asgi_exception_before_response_start_propagates() -> None:
    async def app(scope, receive, send) -> None:
        raise ValueError("boom before start")

    async with httpx.AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        with pytest.raises(ValueError, match="boom before start"):
            await http.get("/")


async def test_asgi_app_returning_without_response_is_an_error() -> None:
    async def app(scope, receive, send) -> None:
        return None

    async with httpx.AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        with pytest.raises(RuntimeError, match="without starting a response"):
            await http.get("/")


async def test_app_crash_mid_body_is_a_protocol_error(target: Target) -> None:
    async with httpx.AsyncClient(transport=target.transport(), base_url=target.base_url) as http:
        async with http.stream("GET", f"/sse/crash/{key()}") as r:
            assert r.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                async for _ in r.aiter_bytes():
                    pass


async def test_read_timeout_is_enforced(target: Target) -> None:
    k = key()
    async with httpx.AsyncClient(
        transport=target.transport(), base_url=target.base_url, timeout=httpx.Timeout(0.2)
    ) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"/sleep/{k}?s=3")


async def test_asgi_transport_close_waits_for_background_work() -> None:
    finished = []

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        await asyncio.sleep(0.05)  # a background task after the response
        finished.append(True)

    http = httpx.AsyncClient(transport=ASGITransport(app), base_url="http://t")
    assert (await http.get("/")).text == "ok"
    await http.aclose()
    assert finished == [True]


# --------------------------------------------------------------------------- RetryTransport


async def test_retries_503_then_succeeds_with_one_idempotency_key(target: Target) -> None:
    k = key()
    async with fast_client(target) as client:
        result = await client.request("POST", f"/flaky/{k}?fails=2&status=503", json={"n": 1})
    assert result == {"attempts": 3}
    attempts = target.state.attempts[k]
    assert len(attempts) == 3
    idem = {a["idempotency_key"] for a in attempts}
    assert len(idem) == 1 and None not in idem
    assert [a["retry_count"] for a in attempts] == [None, "1", "2"]
    assert all(a["body"] == '{"n":1}' or a["body"] == '{"n": 1}' for a in attempts)


async def test_each_logical_call_gets_a_new_idempotency_key(target: Target) -> None:
    k = key()
    async with fast_client(target) as client:
        await client.request("POST", f"/flaky/{k}")
        await client.request("POST", f"/flaky/{k}")
        await client.request("POST", f"/flaky/{k}", idempotency_key="mine")
    keys = [a["idempotency_key"] for a in target.state.attempts[k]]
    assert keys[0] != keys[1] and keys[2] == "mine"


async def test_retry_after_is_honoured(target: Target) -> None:
    k = key()
    async with fast_client(target) as client:
        started = time.monotonic()
        result = await client.request("POST", f"/flaky/{k}?fails=1&status=429&retry_after=0.3")
        elapsed = time.monotonic() - started
    assert result == {"attempts": 2}
    assert elapsed >= 0.3  # backoff is 0 here: only Retry-After made it wait


async def test_retry_after_ms_is_honoured(target: Target) -> None:
    k = key()
    async with fast_client(target) as client:
        started = time.monotonic()
        await client.request("GET", f"/flaky/{k}?fails=1&status=503&retry_after_ms=250&retry_after=30")
        assert time.monotonic() - started >= 0.25
    assert len(target.state.attempts[k]) == 2


async def test_exhausted_retries_raise_the_mapped_error(target: Target) -> None:
    k = key()
    async with fast_client(target, max_retries=2) as client:
        with pytest.raises(ServiceUnavailableError) as info:
            await client.request("POST", f"/flaky/{k}?fails=9&status=503")
    assert info.value.code == "busy" and info.value.status == 503
    assert len(target.state.attempts[k]) == 3


async def test_rate_limit_error_carries_retry_after(target: Target) -> None:
    async with fast_client(target, max_retries=0) as client:
        with pytest.raises(RateLimitError) as info:
            await client.request("GET", "/error/429")
    assert info.value.retry_after == 7.0


async def test_client_errors_are_not_retried(target: Target) -> None:
    k = key()
    async with fast_client(target) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.request("POST", f"/flaky/{k}?fails=9&status=400")
    assert info.value.status == 400
    assert len(target.state.attempts[k]) == 1


async def test_non_idempotent_post_is_retried_only_on_429(target: Target) -> None:
    k1, k2 = key(), key()
    async with fast_client(target) as client:
        with pytest.raises(ServiceUnavailableError):
            await client.request("POST", f"/flaky/{k1}?fails=1&status=503", idempotent_post=False)
        assert await client.request("POST", f"/flaky/{k2}?fails=1&status=429", idempotent_post=False)
    assert len(target.state.attempts[k1]) == 1
    assert len(target.state.attempts[k2]) == 2
    assert target.state.attempts[k2][0]["idempotency_key"] is None


async def test_streamed_body_is_never_replayed(target: Target) -> None:
    k = key()
    async with fast_client(target) as client:
        stream = await client.stream("POST", f"/sse/truncated/{k}", json={}, parse=dict)
        with pytest.raises(UpstreamError) as info:
            async for _ in stream:
                pass
    assert info.value.code == "stream_truncated"
    assert len(target.state.attempts[k]) == 1


async def test_timeouts_are_retried_then_raise_api_timeout(target: Target) -> None:
    k = key()
    async with fast_client(target, max_retries=1, timeout=0.2) as client:
        with pytest.raises(APITimeoutError):
            await client.request("POST", f"/sleep/{k}?s=3")
    assert wait_for(lambda: len(target.state.attempts[k]) == 2)


class CountingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_errors_are_retried_then_raise_connection_error() -> None:
    counting = CountingTransport(httpx.AsyncHTTPTransport())
    retry = RetryTransport(counting, max_retries=2, initial_backoff=0.0)
    async with AsyncClient(f"http://127.0.0.1:{_closed_port()}", transport=retry) as client:
        with pytest.raises(ConnectionError) as info:
            await client.request("POST", "/v1/anything", idempotent_post=False)
    assert counting.calls == 3  # connect errors are safe to retry even without a key
    assert info.value.status is None
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_parse_retry_after() -> None:
    now = time.time()
    assert parse_retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "1500", "Retry-After": "9"})) == 1.5
    date = email.utils.formatdate(now + 10, usegmt=True)
    assert 8 <= (parse_retry_after(httpx.Headers({"Retry-After": date}), now=now) or 0) <= 10
    past = email.utils.formatdate(now - 100, usegmt=True)
    assert parse_retry_after(httpx.Headers({"Retry-After": past}), now=now) == 0.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert parse_retry_after(httpx.Headers()) is None


def test_retry_delay_caps_and_jitter() -> None:
    retry = RetryTransport(httpx.AsyncHTTPTransport(), initial_backoff=0.5, max_backoff=4.0, max_retry_after=60)
    assert retry.retry_delay(0, httpx.Headers({"Retry-After": "3600"})) == 60
    assert retry.retry_delay(0, httpx.Headers({"Retry-After": "2"})) == 2
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0)]:
        delays = [retry.retry_delay(attempt) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # full jitter spreads over the whole range


async def test_asgi_handler_exception_becomes_500_like_a_server(caplog: pytest.LogCaptureFixture) -> None:
    """Starlette answers 500 and then re-raises: the client sees the 500; the rest is logged."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def broken(request):
        raise KeyError("handler bug")

    app = Starlette(routes=[Route("/", broken)])
    async with AsyncClient("http://t", transport=RetryTransport(ASGITransport(app), max_retries=0)) as client:
        with pytest.raises(InternalServerError):
            await client.request("GET", "/")
    assert any("after completing its response" in r.message for r in caplog.records)


async def test_with_options_sets_retries_and_timeout_per_call(target: Target) -> None:
    """``client.with_options(...)`` is the per-call retry policy (Sim's execute_with_retry)."""
    patient, hasty, quick = key(), key(), key()
    async with fast_client(target, max_retries=0) as client:
        more = client.with_options(max_retries=3)
        assert await more.request("POST", f"/flaky/{patient}?fails=2&status=503") == {"attempts": 3}
        with pytest.raises(ServiceUnavailableError):  # the client itself still does not retry
            await client.request("POST", f"/flaky/{hasty}?fails=2&status=503")
        with pytest.raises(APITimeoutError):
            await client.with_options(timeout=0.2).request("GET", f"/sleep/{quick}?s=2")
        await more.aclose()  # a view leaves the shared connections alone
        assert await client.request("POST", f"/flaky/{key()}?fails=0&status=503") == {"attempts": 1}
    assert len(target.state.attempts[patient]) == 3 and len(target.state.attempts[hasty]) == 1


# --------------------------------------------------------------------------- in-process calls


class _CountingASGITransport(ASGITransport):
    """The real transport, counting the requests that came through httpx (not ``call``)."""

    through_httpx = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.through_httpx += 1
        return await super().handle_async_request(request)


async def test_embedded_json_calls_skip_httpx_and_keep_its_behaviour() -> None:
    """``request`` in embedded mode goes straight to the app (``ASGITransport.call``) with the
    same headers, JSON encoding, retries, idempotency key, rate-limit bookkeeping and errors."""
    seen: list[dict[str, object]] = []
    after_response: list[str] = []

    async def app(scope, receive, send) -> None:
        message = await receive()
        headers = dict(scope["headers"])
        seen.append(
            {"path": scope["path"], "headers": headers, "scope_headers": scope["headers"], "body": message["body"]}
        )
        if scope["path"] == "/v1/bad":
            body, status, extra = b'{"error":{"code":"bad_thing","message":"no"}}', 400, []
        elif scope["path"] == "/v1/slow":
            try:
                await asyncio.sleep(5)
            finally:
                after_response.append("slow cancelled")
            return
        elif len([s for s in seen if s["path"] == "/v1/thing"]) <= 2:
            body, status, extra = b'{"error":"busy"}', 503, [(b"retry-after-ms", b"1")]
        else:
            body, status, extra = b'{"ok":true}', 200, [(b"x-ratelimit-limit", b"10"), (b"x-ratelimit-remaining", b"7")]
        headers_out = [(b"content-type", b"application/json"), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers_out})
        await send({"type": "http.response.body", "body": body})
        await asyncio.sleep(0.05)  # work after the response, as under a server
        after_response.append(scope["path"])

    transport = _CountingASGITransport(app)
    client = AsyncClient("http://embedded.test", "sk-test", transport=RetryTransport(transport, initial_backoff=0.0))
    assert await client.request("POST", "/v1/thing", json={"n": 1, "s": "é"}) == {"ok": True}
    assert transport.through_httpx == 0
    attempts = [s for s in seen if s["path"] == "/v1/thing"]
    assert len(attempts) == 3
    first = attempts[0]["headers"]
    assert first[b"authorization"] == b"Bearer sk-test" and first[b"host"] == b"embedded.test"
    assert first[b"content-type"] == b"application/json"
    assert attempts[0]["body"] == '{"n":1,"s":"é"}'.encode()  # as httpx encodes JSON
    assert len({s["headers"][b"idempotency-key"] for s in attempts}) == 1  # type: ignore[index]
    counts = [[v for k, v in s["scope_headers"] if k == b"x-runyard-retry-count"] for s in attempts]  # type: ignore[attr-defined]
    assert counts == [[], [b"1"], [b"2"]]  # one header, replaced on each retry (as RetryTransport does)
    info = client.get_rate_limit_info()
    assert info is not None and info.limit == 10 and info.remaining == 7
    assert "/v1/thing" not in after_response  # the answer came back before the app's work after it

    with pytest.raises(InvalidRequestError) as bad:
        await client.request("POST", "/v1/bad", json={})
    assert bad.value.code == "bad_thing"
    with pytest.raises(APITimeoutError):
        await client.with_options(timeout=0.1).request("GET", "/v1/slow")
    with pytest.raises(ValueError):  # NaN is not JSON, as over HTTP
        await client.request("POST", "/v1/thing", json={"x": float("nan")})
    await client.request("GET", "/v1/thing", headers={"Accept": "text/plain"})
    accepts = [v for k, v in seen[-1]["scope_headers"] if k == b"accept"]  # type: ignore[attr-defined]
    assert accepts == [b"text/plain"]  # the call's header replaces the client's default, as httpx merges them
    assert await client.request("GET", "/v1/thing", params={"q": "1"}) == {"ok": True}
    assert transport.through_httpx == 1  # a query string goes the httpx way
    await client.aclose()
    assert after_response.count("/v1/thing") == 5 and "slow cancelled" in after_response
