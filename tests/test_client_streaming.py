"""The SSE decoder and AsyncStream: unit cases, then real streams over uvicorn and in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from runyard.client import AsyncClient, ChatChunk, RetryTransport
from runyard.client._streaming import ServerSentEvent, aiter_sse
from runyard.errors import APITimeoutError, RateLimitError, UpstreamError
from support.sdk_app import Target, live_target, wait_for

pytestmark = pytest.mark.timeout(20)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def events(*parts: bytes) -> list[ServerSentEvent]:
    return [e async for e in aiter_sse(chunks(*parts))]


# --------------------------------------------------------------------------- decoder


async def test_decoder_basic_fields_and_comments() -> None:
    got = await events(
        b": a comment\n",
        b'event: delta\nid: 7\nretry: 1500\ndata: {"a": 1}\n\n',
        b"data: second\n\n",
    )
    assert got == [
        ServerSentEvent('{"a": 1}', "delta", "7", 1500),
        ServerSentEvent("second", None, "7", None),  # the last event id persists
    ]
    assert got[0].json() == {"a": 1}


async def test_decoder_multiline_data_and_no_space_after_colon() -> None:
    got = await events(b"data: line1\ndata:line2\ndata:  indented\n\n")
    assert [e.data for e in got] == ["line1\nline2\n indented"]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
async def test_decoder_line_endings(eol: bytes) -> None:
    raw = b"data: one" + eol + eol + b"event: e" + eol + b"data: two" + eol + eol
    assert [(e.event, e.data) for e in await events(raw)] == [(None, "one"), ("e", "two")]


async def test_decoder_byte_by_byte_with_crlf_and_utf8_split() -> None:
    raw = "\ufeffdata: héllo wörld ✓\r\n\r\ndata: [DONE]\r\n\r\n".encode()
    got = await events(*(raw[i : i + 1] for i in range(len(raw))))
    assert [e.data for e in got] == ["héllo wörld ✓", "[DONE]"]


async def test_decoder_cr_then_lf_in_next_chunk_is_one_line_break() -> None:
    got = await events(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n")
    assert [e.data for e in got] == ["a", "b"]


async def test_decoder_ignores_events_without_data_and_drops_unterminated_event() -> None:
    got = await events(b"event: ping\n\n", b"data: kept\n\n", b"data: partial")
    assert [e.data for e in got] == ["kept"]


async def test_decoder_keeps_unicode_line_separators_inside_data() -> None:
    got = await events('data: {"t": "a\u2028b\x85c\x0bd"}\n\n'.encode())
    assert got[0].data == '{"t": "a\u2028b\x85c\x0bd"}'  # only CR and LF end lines


# --------------------------------------------------------------------------- AsyncStream


@pytest.fixture(scope="module")
def targets() -> Iterator:
    with live_target() as factory:
        yield factory


@pytest.fixture(params=["uvicorn", "asgi"])
def target(request: pytest.FixtureRequest, targets) -> Target:
    return targets(request.param)


def client_for(target: Target, timeout: float = 5.0) -> AsyncClient:
    retry = RetryTransport(target.transport(), initial_backoff=0.0)
    return AsyncClient(target.base_url, transport=retry, timeout=timeout)


async def test_stream_yields_parsed_items_until_done(target: Target) -> None:
    k = uuid.uuid4().hex
    async with client_for(target) as client:
        stream = await client.stream("POST", f"/sse/ok/{k}", json={}, parse=ChatChunk.model_validate)
        got = [chunk async for chunk in stream]
    assert "".join(c.text for c in got) == "Hello"
    assert got[-1].finish_reason == "stop"
    assert got[-1].usage is not None and got[-1].usage.total_tokens == 5
    assert stream.response.is_closed
    assert wait_for(lambda: target.state.markers[k] == ["finished"])


async def test_stream_error_event_raises_typed_error(target: Target) -> None:
    async with client_for(target) as client:
        stream = await client.stream("POST", f"/sse/error/{uuid.uuid4().hex}", json={}, parse=dict)
        got = []
        with pytest.raises(UpstreamError) as info:
            async for item in stream:
                got.append(item)
    assert len(got) == 2
    assert info.value.code == "upstream_error" and info.value.status == 502
    assert info.value.message == "provider fell over"


async def test_stream_error_event_with_status(target: Target) -> None:
    async with client_for(target) as client:
        stream = await client.stream("POST", f"/sse/error429/{uuid.uuid4().hex}", json={}, parse=dict)
        with pytest.raises(RateLimitError) as info:
            async for _ in stream:
                pass
    assert info.value.code == "rate_limited"


async def test_stream_without_done_is_truncation_not_silence(target: Target) -> None:
    async with client_for(target) as client:
        stream = await client.stream("POST", f"/sse/truncated/{uuid.uuid4().hex}", json={}, parse=dict)
        got = []
        with pytest.raises(UpstreamError) as info:
            async for item in stream:
                got.append(item)
    assert len(got) == 3  # every event that did arrive was delivered first
    assert info.value.code == "stream_truncated"


async def test_stream_dropped_connection_is_truncation(target: Target) -> None:
    async with client_for(target) as client:
        stream = await client.stream("POST", f"/sse/crash/{uuid.uuid4().hex}", json={}, parse=dict)
        with pytest.raises(UpstreamError) as info:
            async for _ in stream:
                pass
    assert info.value.code == "stream_truncated"


async def test_stream_stall_is_a_timeout(target: Target) -> None:
    async with client_for(target, timeout=0.3) as client:
        stream = await client.stream("POST", f"/sse/hang/{uuid.uuid4().hex}", json={}, parse=dict)
        with pytest.raises(APITimeoutError):
            async for _ in stream:
                pass


async def test_stream_aclose_early_stops_the_server_side(target: Target) -> None:
    k = uuid.uuid4().hex
    async with client_for(target) as client:
        async with await client.stream("POST", f"/sse/hang/{k}", json={}, parse=dict) as stream:
            first = await stream.__anext__()
            assert first["delta"] == {"content": "Hel"}
        assert stream.response.is_closed
    assert wait_for(lambda: target.state.markers[k] == ["stopped:CancelledError"])
