"""OpenAI-compatible API: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``.

The official ``openai`` package works against it unchanged (``base_url=.../v1``).
"""

from __future__ import annotations

import base64
import sys
import time
from array import array
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import InvalidRequestError
from ...inference import ChatOutcome, ChatRequest, EmbedRequest
from ...services.ai import CallContext
from ...services.openai_params import check_chat_params
from ...services.streams import ChatStream
from ..calls import guarded_stream
from ..http import (
    DONE,
    EventStream,
    caller_key_id,
    gateway,
    idempotency_key,
    idempotent,
    json_response,
    pending_admission,
    read_body,
    validate_json,
)
from ..openapi import ANY_OBJECT, Operation


async def chat_completions(request: Request) -> Response:
    raw = await read_body(request)
    chat_request = validate_json(ChatRequest, raw)
    if not chat_request.model:
        raise InvalidRequestError("'model' is required", code="missing_model")
    if chat_request.model_extra:
        check_chat_params(chat_request.model_extra)  # n, logprobs: refused, not dropped
    ctx = CallContext(api_key_id=caller_key_id(request), admission=pending_admission(request))
    service = gateway(request).ai
    if chat_request.stream:
        stream = await service.open_stream(chat_request, ctx)
        include_usage = bool((chat_request.stream_options or {}).get("include_usage"))
        return EventStream(_openai_events(stream, include_usage))

    async def produce() -> Response:
        return json_response(render_completion(await service.chat(chat_request, ctx)))

    return await idempotent(request, idempotency_key(request), raw, produce)


def render_completion(result: ChatOutcome) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.content}
    if result.tool_calls:
        message["tool_calls"] = [tc.to_openai() for tc in result.tool_calls]
    usage = result.usage
    return {
        "id": "chatcmpl-" + result.inference_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.model,
        "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}],
        "usage": {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        },
        "system_fingerprint": None,
        "x_runyard": {"inference_id": result.inference_id, "provider": result.provider},
    }


def _chunk(result: ChatOutcome, created: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + result.inference_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": result.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


async def _openai_events(stream: ChatStream, include_usage: bool) -> AsyncIterator[bytes]:
    import orjson

    result = stream.result
    created = int(time.time())
    yield b"data: " + orjson.dumps(_chunk(result, created, {"role": "assistant", "content": ""}, None)) + b"\n\n"
    usage = None
    async for item in guarded_stream(stream):
        if isinstance(item, bytes):  # [DONE] or an error event
            if include_usage and usage is not None and item == DONE:
                final = _chunk(result, created, {}, None)
                final["choices"] = []
                final["usage"] = {
                    "prompt_tokens": usage.input_tokens,
                    "completion_tokens": usage.output_tokens,
                    "total_tokens": usage.total_tokens,
                }
                yield b"data: " + orjson.dumps(final) + b"\n\n"
            yield item
            continue
        if item.usage is not None:
            usage = item.usage
        if item.content is None and not item.tool_calls and item.finish_reason is None:
            continue
        yield b"data: " + orjson.dumps(_chunk(result, created, item.to_openai(), item.finish_reason)) + b"\n\n"


async def embeddings(request: Request) -> Response:
    raw = await read_body(request)
    embed_request = validate_json(EmbedRequest, raw)
    ctx = CallContext(api_key_id=caller_key_id(request))

    async def produce() -> Response:
        result = await gateway(request).ai.embed(
            embed_request.texts, embed_request.model, dimensions=embed_request.dimensions, ctx=ctx
        )
        as_base64 = embed_request.encoding_format == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _b64(vec) if as_base64 else vec}
            for i, vec in enumerate(result.embeddings)
        ]
        tokens = result.usage.input_tokens
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": result.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return await idempotent(request, idempotency_key(request), raw, produce)


def _b64(vector: list[float]) -> str:
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


async def models(request: Request) -> Response:
    created = int(time.time())
    data = [
        {"id": m["id"], "object": "model", "created": created, "owned_by": m["routes"][0].split("::")[0]}
        for m in gateway(request).ai.list_models()
    ]
    return json_response({"object": "list", "data": data})


hot_routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
]
routes = [*hot_routes, Route("/v1/models", models, methods=["GET"])]

# The API description (server/openapi): one declaration per route.
operations = [
    Operation(
        "POST",
        "/v1/chat/completions",
        "OpenAI: chat completions",
        "openai",
        "createChatCompletion",
        body=ChatRequest,
        response=ANY_OBJECT,
        stream=True,
    ),
    Operation(
        "POST",
        "/v1/embeddings",
        "OpenAI: embeddings",
        "openai",
        "createEmbedding",
        body=EmbedRequest,
        response=ANY_OBJECT,
    ),
    Operation(
        "GET", "/v1/models", "OpenAI: the models this gateway serves", "openai", "listModels", response=ANY_OBJECT
    ),
]
