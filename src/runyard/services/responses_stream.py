"""A streamed chat as the Responses API's typed server-sent events.

``response.created``, ``response.in_progress``, then per output item ``output_item.added``,
(``content_part.added``, ``output_text.delta``..., ``output_text.done``, ``content_part.done``)
or (``function_call_arguments.delta``..., ``function_call_arguments.done``), ``output_item.done``;
last ``response.completed`` (or ``response.failed``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from ..errors import InternalServerError, RunyardError
from ..inference import ChatOutcome, ModelToolCall
from .ai import ChatStream
from .responses_translate import ResponsesRequest, function_call_item, message_item, new_item_id, response_object

log = logging.getLogger("runyard.responses")

Finish = Callable[[ChatOutcome, list[dict[str, Any]]], Awaitable[dict[str, Any]]]


class _Events:
    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class _Output:
    """The output items as they open and close, with the events that go with each step."""

    def __init__(self, event: _Events) -> None:
        self.event = event
        self.items: list[dict[str, Any]] = []
        self.text: list[str] | None = None  # the open message's text so far
        self.message_at = -1
        self.calls: dict[int, tuple[int, ModelToolCall]] = {}  # delta index -> (output index, call)

    def text_delta(self, piece: str) -> list[bytes]:
        out = []
        if self.text is None:
            self.text, self.message_at = [], len(self.items)
            item = message_item("", new_item_id("msg"), status="in_progress")
            self.items.append(item)
            out.append(self.event("response.output_item.added", output_index=self.message_at, item=item))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(self._part("response.content_part.added", part))
        self.text.append(piece)
        out.append(self._part("response.output_text.delta", None, delta=piece, logprobs=[]))
        return out

    def _part(self, kind: str, part: dict[str, Any] | None, **fields: Any) -> bytes:
        item_id = self.items[self.message_at]["id"]
        extra = {"part": part} if part is not None else {}
        return self.event(kind, item_id=item_id, output_index=self.message_at, content_index=0, **extra, **fields)

    def close_message(self) -> list[bytes]:
        if self.text is None:
            return []
        text, self.text = "".join(self.text), None
        item = message_item(text, self.items[self.message_at]["id"])
        self.items[self.message_at] = item
        return [
            self._part("response.output_text.done", None, text=text, logprobs=[]),
            self._part("response.content_part.done", item["content"][0]),
            self.event("response.output_item.done", output_index=self.message_at, item=item),
        ]

    def call_delta(self, index: int, call_id: str | None, name: str | None, arguments: str) -> list[bytes]:
        out = self.close_message()
        if index not in self.calls:
            call = ModelToolCall(id=call_id or new_item_id("call"), name=name or "", arguments="")
            at = len(self.items)
            self.calls[index] = (at, call)
            item = function_call_item(call, new_item_id("fc"), status="in_progress")
            self.items.append(item)
            out.append(self.event("response.output_item.added", output_index=at, item=item))
        at, call = self.calls[index]
        call.name = call.name or name or ""
        if arguments:
            call.arguments += arguments
            item_id = self.items[at]["id"]
            out.append(
                self.event("response.function_call_arguments.delta", item_id=item_id, output_index=at, delta=arguments)
            )
        return out

    def close(self) -> list[bytes]:
        out = self.close_message()
        for at, call in self.calls.values():
            call.arguments = call.arguments or "{}"
            item = function_call_item(call, self.items[at]["id"])
            self.items[at] = item
            fields = {"item_id": item["id"], "output_index": at}
            done = "response.function_call_arguments.done"
            out.append(self.event(done, **fields, arguments=call.arguments, name=call.name))
            out.append(self.event("response.output_item.done", output_index=at, item=item))
        self.calls = {}
        return out


async def response_events(
    stream: ChatStream, req: ResponsesRequest, response_id: str, created_at: float, finish: Finish
) -> AsyncIterator[bytes]:
    """The events of one streamed response; ``finish`` files it and returns the final object."""
    event = _Events()
    body = response_object(req, response_id, created_at, status="in_progress")
    yield event("response.created", response=body)
    yield event("response.in_progress", response=body)
    output = _Output(event)
    try:
        async for delta in stream:
            if delta.content:
                for chunk in output.text_delta(delta.content):
                    yield chunk
            for tc in delta.tool_calls or ():
                for chunk in output.call_delta(tc.index, tc.id, tc.name, tc.arguments):
                    yield chunk
    except Exception as exc:
        err = exc if isinstance(exc, RunyardError) else InternalServerError("stream failed; see the server log")
        if not isinstance(exc, RunyardError):
            log.exception("response stream failed")
        error = {"code": err.code, "message": err.message}
        failed = response_object(req, response_id, created_at, status="failed", output=output.items, error=error)
        yield event("response.failed", response=failed)
        return
    for chunk in output.close():
        yield chunk
    final = await finish(stream.result, output.items)
    yield event("response.completed", response=final)
