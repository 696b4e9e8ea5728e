"""Server-sent events, decoded once for everyone: the SDK's streams (runyard.client) and the
providers' upstream streams (runyard.providers) read them through :func:`aiter_sse`.

WHATWG rules: lines end at CRLF, CR or LF (a chunk may split a CRLF), a leading BOM is dropped,
``data`` lines of one event are joined with newlines, comments are skipped, and an event counts
once a blank line closes it.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

__all__ = ["DONE", "SSEDecoder", "ServerSentEvent", "aiter_lines", "aiter_sse"]

_EOL = re.compile(r"\r\n|\r|\n")
DONE = "[DONE]"


@dataclass(slots=True)
class ServerSentEvent:
    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SSEDecoder:
    """Incremental SSE parser (WHATWG rules): feed lines, get events at blank lines."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self.last_event_id: str | None = None

    def decode(self, line: str) -> ServerSentEvent | None:
        """Process one line (without its terminator); returns an event on a blank line."""
        if not line:
            if not self._data:
                self._event = None
                return None
            sse = ServerSentEvent("\n".join(self._data), self._event, self._id, self._retry)
            self._data, self._event, self._retry = [], None, None
            return sse
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


async def aiter_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """Split a UTF-8 byte stream on CRLF, CR or LF (a CR at a chunk's end may precede LF)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buf = ""
    first = True
    async for chunk in chunks:
        buf += decoder.decode(chunk)
        if first and buf:
            buf, first = buf.removeprefix("\ufeff"), False
        pos = 0
        while (m := _EOL.search(buf, pos)) is not None:
            if m.group() == "\r" and m.end() == len(buf):
                break  # wait: the LF of a CRLF may be in the next chunk
            yield buf[pos : m.start()]
            pos = m.end()
        buf = buf[pos:]
    buf += decoder.decode(b"", final=True)
    lines = _EOL.split(buf)
    # The last piece has no terminator; an unterminated line is still a line to the caller,
    # who discards the pending event at EOF anyway.
    for line in lines if lines[-1] else lines[:-1]:
        yield line


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    """Events of an SSE byte stream. An event not closed by a blank line at EOF is dropped."""
    decoder = SSEDecoder()
    async for line in aiter_lines(chunks):
        sse = decoder.decode(line)
        if sse is not None:
            yield sse
