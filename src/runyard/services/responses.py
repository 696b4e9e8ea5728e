"""The Responses API over the chat service: every response is a chat inference (routed, limited,
priced, recorded), filed under its own id when ``store`` is on so ``previous_response_id`` can
continue it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..inference import ChatOutcome, ChatRequest
from .ai import AIService, CallContext
from .openai_records import OpenAIRecords
from .responses_stream import response_events
from .responses_translate import (
    ResponsesRequest,
    assistant_message,
    chat_request,
    check_supported,
    input_items,
    message_item,
    new_item_id,
    now,
    output_items,
    response_id_for,
    response_object,
    to_messages,
)


class _Prepared:
    def __init__(self, req: ResponsesRequest, previous: dict[str, Any] | None) -> None:
        check_supported(req)
        self.items = input_items(req)
        history: list[dict[str, Any]] = list(previous["conversation"]) if previous else []
        self.conversation = history + to_messages(self.items)
        self.chat: ChatRequest = chat_request(req, self.conversation)


class ResponsesService:
    def __init__(self, ai: AIService, records: OpenAIRecords) -> None:
        self.ai = ai
        self.records = records

    async def create(self, req: ResponsesRequest, ctx: CallContext, previous: dict[str, Any] | None) -> dict[str, Any]:
        """Answer in one piece; ``previous`` is the stored row ``previous_response_id`` names."""
        prepared = _Prepared(req, previous)
        result = await self.ai.chat(prepared.chat, ctx)
        response_id = response_id_for(result.inference_id)
        body = response_object(req, response_id, now(), output=output_items(result), result=result)
        await self._file(req, body, prepared, result, ctx)
        return body

    async def open_stream(
        self, req: ResponsesRequest, ctx: CallContext, previous: dict[str, Any] | None
    ) -> AsyncIterator[bytes]:
        """Start a streamed response (a failure before the first token raises, for an HTTP error)."""
        prepared = _Prepared(req, previous)
        stream = await self.ai.open_stream(prepared.chat, ctx)
        response_id, created = response_id_for(stream.result.inference_id), now()

        async def finish(result: ChatOutcome, output: list[dict[str, Any]]) -> dict[str, Any]:
            items = output or [message_item("", new_item_id("msg"))]
            body = response_object(req, response_id, created, output=items, result=result)
            await self._file(req, body, prepared, result, ctx)
            return body

        return response_events(stream, req, response_id, created, finish)

    async def _file(
        self, req: ResponsesRequest, body: dict[str, Any], prepared: _Prepared, result: ChatOutcome, ctx: CallContext
    ) -> None:
        if not req.stored:
            return
        await self.records.put_response(
            body["id"],
            inference_id=result.inference_id,
            api_key_id=ctx.api_key_id,
            body=body,
            input_items=prepared.items,
            conversation=[*prepared.conversation, assistant_message(result)],
        )

    async def get(self, response_id: str) -> dict[str, Any] | None:
        return await self.records.get_response(response_id)

    async def delete(self, response_id: str) -> None:
        await self.records.delete_response(response_id)
