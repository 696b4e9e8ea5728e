"""The SDK's streams: an async stream of items parsed from server-sent events (decoded by
:mod:`runyard.sse`, the one decoder the providers use too), and its sync twin."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from runyard.errors import APITimeoutError, RunyardError, UpstreamError, error_for_status
from runyard.sse import DONE, ServerSentEvent, SSEDecoder, aiter_sse

if TYPE_CHECKING:
    from runyard.client._sync import Portal
    from runyard.client.types import ChatChunk

__all__ = ["AsyncChatStream", "AsyncStream", "ChatStream", "SSEDecoder", "ServerSentEvent", "Stream", "aiter_sse"]

T = TypeVar("T")


def _error_from_event(payload: dict[str, Any]) -> RunyardError:
    err = payload.get("error")
    if not isinstance(err, dict):
        err = {"message": str(err)}
    status = err.get("status")
    return error_for_status(
        status if isinstance(status, int) else 502,
        err.get("code"),
        str(err.get("message") or "error event in stream"),
        err.get("details"),
    )


class AsyncStream(Generic[T]):
    """Parsed items of an SSE response. Ends at ``data: [DONE]``; an ``error`` event raises
    the matching :mod:`runyard.errors` class; a stream that ends without ``[DONE]`` raises
    ``UpstreamError(code="stream_truncated")``."""

    def __init__(self, response: httpx.Response, parse: Callable[[dict[str, Any]], T]) -> None:
        self.response = response
        self._parse = parse
        self._iterator: AsyncGenerator[T, None] = self._iter()
        self.metadata: dict[str, Any] | None = None

    async def _iter(self) -> AsyncGenerator[T, None]:
        try:
            async for sse in aiter_sse(self.response.aiter_bytes()):
                if sse.data == DONE:
                    return
                if not sse.data.strip():
                    continue
                try:
                    payload = json.loads(sse.data)
                except ValueError as exc:
                    raise UpstreamError(f"malformed stream event: {sse.data[:200]!r}", code="bad_stream") from exc
                if isinstance(payload, dict) and ("error" in payload or sse.event == "error"):
                    raise _error_from_event(payload)
                if isinstance(payload, dict) and "_metadata" in payload:
                    self.metadata = payload["_metadata"]
                yield self._parse(payload)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"stream stalled: {exc}") from exc
        except httpx.TransportError as exc:
            raise UpstreamError(f"stream connection lost: {exc}", code="stream_truncated") from exc
        finally:
            await self.response.aclose()
        raise UpstreamError("stream ended without [DONE]", code="stream_truncated")

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        """Stop reading and close the response (cancels the request upstream)."""
        await self._iterator.aclose()
        await self.response.aclose()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Stream(Generic[T]):
    """Blocking iteration over an :class:`AsyncStream`, driven through a :class:`Portal`."""

    def __init__(self, stream: AsyncStream[T], portal: Portal) -> None:
        self._stream = stream
        self._portal = portal
        self._iterator: Generator[T, None, None] = portal.iterate(stream)

    @property
    def response(self) -> httpx.Response:
        return self._stream.response

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The answer's ``_metadata`` (request id, vendor, model, cost, ...), once the stream has ended."""
        return self._stream.metadata

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._iterator)

    def close(self) -> None:
        self._iterator.close()
        if not self._portal.closed:
            self._portal.call(self._stream.aclose())

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncChatStream(AsyncStream["ChatChunk"]):
    """A streamed chat: iterate for :class:`ChatChunk` s; what has arrived is kept, so once the
    stream has ended it reads like a non-streamed result (``content``, ``usage``, ``_metadata``).
    ``await stream.final()`` reads the rest and returns that result as a dict."""

    def __init__(self, response: httpx.Response, parse: Callable[[dict[str, Any]], ChatChunk]) -> None:
        super().__init__(response, parse)
        self._parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.inference_id: str | None = None
        self.done = False

    async def __anext__(self) -> ChatChunk:
        try:
            chunk = await self._iterator.__anext__()
        except StopAsyncIteration:
            self.done = True
            raise
        if chunk.delta.content:
            self._parts.append(chunk.delta.content)
        self.finish_reason = chunk.finish_reason or self.finish_reason
        self.usage = chunk.usage or self.usage
        self.inference_id = chunk.inference_id or self.inference_id
        return chunk

    @property
    def content(self) -> str:
        """The text received so far (all of it once the stream has ended)."""
        return "".join(self._parts)

    def result(self) -> dict[str, Any]:
        """What has arrived, shaped like a non-streamed chat result."""
        meta = self.metadata or {}
        return {
            "content": self.content,
            "text": self.content,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "inference_id": self.inference_id,
            "model": meta.get("model"),
            "provider": meta.get("vendor"),
            "_metadata": meta,
        }

    async def final(self) -> dict[str, Any]:
        """Read the rest of the stream; the whole answer as :meth:`result`."""
        async for _ in self:
            pass
        return self.result()

    def get(self, key: str, default: Any = None) -> Any:
        """What has arrived so far, by key (``_metadata`` once the stream has ended)."""
        value = self.result().get("_metadata" if key == "metadata" else key)
        return default if value is None else value


class ChatStream(Stream["ChatChunk"]):
    """Blocking twin of :class:`AsyncChatStream`. Reading it like a result
    (``stream["content"]``, ``stream.get("_metadata")``) first reads the rest of the stream."""

    _stream: AsyncChatStream

    def final(self) -> dict[str, Any]:
        """Read the rest of the stream; the whole answer as a dict."""
        for _ in self:
            pass
        return self._stream.result()

    @property
    def content(self) -> str:
        """The text received so far (all of it once the stream has ended)."""
        return self._stream.content

    def __getitem__(self, key: str) -> Any:
        result = self.final()
        if key == "metadata":
            key = "_metadata"
        if key not in result:
            raise KeyError(key)
        return result[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value
