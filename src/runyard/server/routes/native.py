"""Runyard's own API: ``/v1/ai/chat``, ``/v1/ai/embed``, ``/v1/feedback``, ``/v1/inferences``, ``/healthz``."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import InvalidRequestError, NotFoundError, TimeoutError
from ...inference import ChatDelta, ChatOutcome, ChatRequest, EmbedOutcome, EmbedRequest
from ...services.ai import CallContext, ChatOptions
from ...services.streams import ChatStream
from ..access import check_file, check_file_refs, require, scope_workspace
from ..calls import apply_vendor, call_context, guarded_stream, outcome_metadata, render_chat, uuid_str
from ..http import (
    DONE,
    EventStream,
    caller_key_id,
    gateway,
    idempotency_key,
    idempotent,
    json_response,
    parse_object,
    read_body,
    read_object,
    sse_event,
    validate,
)
from ..openapi import ANY_OBJECT, BINARY, Operation, Param

T = TypeVar("T")


async def healthz(_request: Request) -> Response:
    return json_response({"status": "ok"})


class _RoutingOptions(BaseModel):
    """The Infrai-style routing and caching knobs of ``/v1/ai/chat`` (never sent upstream)."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["general", "reasoning", "coding", "long_context"] = "general"
    prefer: Literal["balanced", "cheapest", "smartest"] = "balanced"
    max_cost_multiplier: float | None = Field(default=None, ge=1.0)
    cache_strategy: Literal["vendor", "runyard", "infrai", "none"] | None = None


_CACHE = (None, "vendor", "runyard", "none")
# Infrai names Runyard's own cache layer "infrai": the same exact-match cache.
_CACHE_ALIASES = {"infrai": "runyard"}


_CHOICES = {name: get_args(_RoutingOptions.model_fields[name].annotation) for name in ("task", "prefer")}


_TASKS, _PREFERS = _CHOICES["task"], _CHOICES["prefer"]
_MISSING = object()


def _options(body: dict[str, Any], vendor: str | None) -> ChatOptions:
    pop = body.pop
    task, prefer = pop("task", "general"), pop("prefer", "balanced")
    cache, multiplier = pop("cache_strategy", None), pop("max_cost_multiplier", _MISSING)
    cache = _CACHE_ALIASES.get(cache, cache) if isinstance(cache, str) else cache
    if multiplier is _MISSING and task in _TASKS and prefer in _PREFERS and cache in _CACHE:
        return ChatOptions(task=task, prefer=prefer, vendor=vendor, cache_strategy=cache)  # the common, valid case
    picked = {"task": task, "prefer": prefer, "cache_strategy": cache}
    if multiplier is not _MISSING:
        picked["max_cost_multiplier"] = multiplier
    opts = validate(_RoutingOptions, picked)  # anything else: pydantic's checks and messages
    return ChatOptions(
        task=opts.task,
        prefer=opts.prefer,
        vendor=vendor,
        max_cost_multiplier=opts.max_cost_multiplier,
        cache_strategy=opts.cache_strategy,
    )


class _PlainChat(ChatRequest):
    """The common ``/v1/ai/chat`` body, read in one pydantic pass from the raw JSON: a
    ChatRequest plus the native fields, which are never serialised (not sent upstream, not part
    of the cache key, not recorded). Bodies it does not take go the general way (below)."""

    task: Literal["general", "reasoning", "coding", "long_context"] = Field(default="general", exclude=True)
    prefer: Literal["balanced", "cheapest", "smartest"] = Field(default="balanced", exclude=True)
    max_cost_multiplier: float | None = Field(default=None, ge=1.0, exclude=True)
    cache_strategy: Literal["vendor", "runyard", "infrai", "none"] | None = Field(default=None, exclude=True)
    tags: dict[str, str] | None = Field(default=None, exclude=True)
    episode_id: uuid.UUID | None = Field(default=None, exclude=True)
    idempotency_key: str | None = Field(default=None, exclude=True)
    timeout_seconds: Any = Field(default=None, exclude=True)  # the call's deadline (see _deadline)
    # Only the general way handles these: a body that has them goes there.
    vendor: Any = Field(default=None, exclude=True)
    prompt: Any = Field(default=None, exclude=True)
    batch_mode: Any = Field(default=None, exclude=True)


def _plain_chat(raw: bytes) -> _PlainChat | None:
    try:
        body = _PlainChat.model_validate_json(raw)
    except PydanticValidationError:
        return None  # the general way gives the error (or takes what this cannot)
    if body.vendor is not None or body.prompt is not None or body.batch_mode is not None:
        return None
    return body


async def chat(request: Request) -> Response:
    raw = await read_body(request)
    plain = _plain_chat(raw)
    if plain is not None:
        key = plain.idempotency_key or idempotency_key(request)
        episode_id = str(plain.episode_id) if plain.episode_id is not None else None
        ctx = CallContext(episode_id=episode_id, api_key_id=caller_key_id(request), tags=plain.tags)
        options = ChatOptions(
            task=plain.task,
            prefer=plain.prefer,
            max_cost_multiplier=plain.max_cost_multiplier,
            cache_strategy=_CACHE_ALIASES.get(plain.cache_strategy or "", plain.cache_strategy),
        )
        chat_request: ChatRequest = plain
        deadline = _deadline(plain.timeout_seconds)
    else:
        body = parse_object(raw)
        key = idempotency_key(request, body)
        ctx = call_context(request, body)
        prompt = body.pop("prompt", None)
        if "messages" not in body and prompt is not None:
            body["messages"] = prompt
        if isinstance(body.get("messages"), str):
            body["messages"] = [{"role": "user", "content": body["messages"]}]
        batch_mode = body.pop("batch_mode", False)
        deadline = _deadline(body.pop("timeout_seconds", None))
        options = _options(body, apply_vendor(body, routing=True))
        chat_request = validate(ChatRequest, body)
        if batch_mode:
            return await _queue_chat(request, key, raw, chat_request)
    service = gateway(request).ai
    if chat_request.stream:
        stream = await within(deadline, service.open_stream(chat_request, ctx, options))
        return EventStream(_native_events(stream))

    async def produce() -> Response:
        return json_response(render_chat(await within(deadline, service.chat(chat_request, ctx, options))))

    return await idempotent(request, key, raw, produce)


MAX_TIMEOUT_S = 3600.0


def _deadline(value: Any) -> float | None:
    """``timeout_seconds``: the caller's deadline for the whole call (fallbacks included)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequestError("'timeout_seconds' must be a number of seconds", code="invalid_timeout")
    if not 0 < value <= MAX_TIMEOUT_S:
        raise InvalidRequestError(
            f"'timeout_seconds' must be above 0 and at most {MAX_TIMEOUT_S:g}", code="invalid_timeout"
        )
    return float(value)


async def within(deadline: float | None, call: Awaitable[T]) -> T:
    """``call``, cancelled with a 504 ``timeout`` once ``deadline`` seconds have passed."""
    if deadline is None:
        return await call
    try:
        return await asyncio.wait_for(call, deadline)
    except asyncio.TimeoutError:
        raise TimeoutError(
            f"no answer within timeout_seconds={deadline:g} (the upstream calls were cancelled)", code="timeout"
        ) from None


async def _queue_chat(request: Request, key: str | None, raw: bytes, chat_request: ChatRequest) -> Response:
    """``batch_mode``: the chat runs later as a ``runyard/chat`` task, through the provider's batch
    API where it has one (priced at the catalog's batch price); answer 202 with the task."""
    if not chat_request.model or chat_request.stream:
        raise InvalidRequestError("batch_mode needs a 'model' and no 'stream'", code="invalid_batch_request")
    tasks = gateway(request).tasks
    chat_input = chat_request.model_dump(mode="json", exclude_none=True, exclude={"stream", "stream_options"})
    await check_file_refs(request, chat_input)
    chat_input["batch_mode"] = True  # the task goes through the provider's batch API (services/apps.py)

    async def produce() -> Response:
        task = await tasks.create("runyard/chat", chat_input, api_key_id=request.state.api_key_id)
        return json_response(task, status=202)

    return await idempotent(request, key, raw, produce)


class _BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file: str = Field(description="an uploaded JSONL file: its id or runyard://files/<id>")
    concurrency: int = Field(default=4, ge=1, le=64)


async def batch(request: Request) -> Response:
    """``POST /v1/ai/batch``: a JSONL file of chat requests (uploaded first, or sent as the body
    with ``Content-Type: application/jsonl``) → a task whose output holds the results file."""
    gw = gateway(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type in ("application/jsonl", "application/x-ndjson", "application/ndjson"):
        record = await gw.files.put(
            request.stream(), "batch.jsonl", "application/jsonl", api_key_id=request.state.api_key_id
        )
        body = _BatchBody(input_file=record.uri, concurrency=int(request.query_params.get("concurrency", 4)))
    else:
        body = validate(_BatchBody, await read_object(request))
        record = await gw.files.get(body.input_file)
        await check_file(request, record, body.input_file)
    task = await gw.tasks.create(
        "runyard/chat-batch",
        {"file": record.uri, "concurrency": body.concurrency},
        api_key_id=request.state.api_key_id,
    )
    return json_response(task, status=202)


def render_native_delta(result: ChatOutcome, delta: ChatDelta) -> dict[str, Any]:
    event: dict[str, Any] = {
        "inference_id": result.inference_id,
        "episode_id": result.episode_id,
        "index": 0,
        "delta": delta.to_openai(),
        "finish_reason": delta.finish_reason,
    }
    if delta.usage is not None:
        event["usage"] = delta.usage.to_dict()
        event["model"] = result.model
        event["provider"] = result.provider
    return event


async def _native_events(stream: ChatStream) -> AsyncIterator[bytes]:
    """Native SSE chunks; the last one (its finish_reason set) waits for the stream's end so
    it can carry the same ``_metadata`` as a non-streamed answer (cost, latency, attempts)."""
    last: ChatDelta | None = None
    async for item in guarded_stream(stream):
        if last is not None:
            event = render_native_delta(stream.result, last)
            if item is DONE:
                event["_metadata"] = outcome_metadata(stream.result)
            yield sse_event(event)
            last = None
        if isinstance(item, bytes):
            yield item
        elif item.finish_reason:
            last = item
        else:
            yield sse_event(render_native_delta(stream.result, item))


class _EmbedBody(EmbedRequest):
    model_config = ConfigDict(extra="forbid")
    episode_id: str | None = None
    tags: dict[str, str] | None = None


async def embed(request: Request) -> Response:
    raw = await read_body(request)
    body = parse_object(raw)
    key = idempotency_key(request, body)
    ctx = call_context(request, body)
    vendor = apply_vendor(body, routing=True)
    embed_request = validate(_EmbedBody, body)

    async def produce() -> Response:
        result = await gateway(request).ai.embed(
            embed_request.texts, embed_request.model, dimensions=embed_request.dimensions, ctx=ctx, vendor=vendor
        )
        return json_response(render_embed(result))

    return await idempotent(request, key, raw, produce)


def render_embed(result: EmbedOutcome) -> dict[str, Any]:
    return {
        "inference_id": result.inference_id,
        "embeddings": result.embeddings,
        "data": [{"index": i, "embedding": e} for i, e in enumerate(result.embeddings)],
        "model": result.model,
        "provider": result.provider,
        "usage": result.usage.to_dict(),
        "_metadata": outcome_metadata(result),
    }


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric_name: str = Field(min_length=1)
    value: Any
    inference_id: str | None = None
    episode_id: str | None = None
    tags: dict[str, str] | None = None


async def feedback(request: Request) -> Response:
    data = await read_object(request)
    body = validate(FeedbackBody, data)
    if "value" not in data:
        raise InvalidRequestError("'value' is required", code="missing_value")
    if body.inference_id and scope_workspace(request) is not None:
        with contextlib.suppress(InvalidRequestError):  # a bad id is the feedback service's to report
            await _inference(request, body.inference_id, missing_ok=True)
    feedback_id = await gateway(request).feedback.submit(
        body.metric_name, body.value, inference_id=body.inference_id, episode_id=body.episode_id, tags=body.tags
    )
    return json_response({"feedback_id": feedback_id})


async def status(request: Request) -> Response:
    """Health of the routes (circuit breakers), the response cache and the inference recorder."""
    gw = gateway(request)
    recorder = gw.recorder.stats() if gw.recorder is not None else None
    return json_response({"status": "ok", **gw.ai.status(), "recorder": recorder})


async def _inference(request: Request, raw_id: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
    """The stored inference, if the caller may see it (404 ``inference_not_found`` otherwise;
    ``missing_ok``: None for an unknown id)."""
    gw = gateway(request)
    inference_id = uuid_str(raw_id, "inference_id")
    if gw.recorder is not None and gw.recorder.is_pending(inference_id):
        await gw.recorder.flush()
    row = await gw.store.get_inference(inference_id)
    not_found = NotFoundError(f"inference {inference_id} not found", code="inference_not_found")
    if row is None:
        if missing_ok:
            return None
        raise not_found
    await require(request, row.get("api_key_id"), not_found)
    return row


async def get_inference(request: Request) -> Response:
    gw = gateway(request)
    row = await _inference(request, request.path_params["inference_id"])
    assert row is not None
    inference_id = row["id"]
    row["created_at"] = row["created_at"].isoformat()
    row["feedback"] = [
        {**f, "created_at": f["created_at"].isoformat()} for f in await gw.store.list_feedback(inference_id)
    ]
    return json_response(row)


hot_routes = [
    Route("/v1/ai/chat", chat, methods=["POST"]),
    Route("/v1/ai/embed", embed, methods=["POST"]),
]
routes = [
    Route("/healthz", healthz, methods=["GET"]),
    *hot_routes,
    Route("/v1/ai/batch", batch, methods=["POST"]),
    Route("/v1/feedback", feedback, methods=["POST"]),
    Route("/v1/inferences/{inference_id}", get_inference, methods=["GET"]),
    Route("/v1/status", status, methods=["GET"]),
]

# The API description (server/openapi): one declaration per route, naming the models validated above.
operations = [
    Operation("GET", "/healthz", "Liveness", "meta", "healthz", response=ANY_OBJECT, security="none"),
    Operation(
        "POST",
        "/v1/ai/chat",
        "Chat (native): routing, caching, fallbacks",
        "ai",
        "aiChat",
        body=_PlainChat,
        response=ANY_OBJECT,
        stream=True,
        description="Also takes `prompt` (a string or messages), `vendor` and `batch_mode` (202: a task, run "
        "through the provider's batch API at its batch price).",
    ),
    Operation("POST", "/v1/ai/embed", "Embeddings (native)", "ai", "aiEmbed", body=_EmbedBody, response=ANY_OBJECT),
    Operation(
        "POST",
        "/v1/ai/batch",
        "A batch of chats from a JSONL file",
        "ai",
        "aiBatch",
        bodies={"application/json": _BatchBody, "application/jsonl": BINARY},
        params=(Param("concurrency", schema={"type": "integer", "minimum": 1, "maximum": 64}),),
        response=ANY_OBJECT,
        status=202,
    ),
    Operation(
        "POST",
        "/v1/feedback",
        "Feedback on an inference or episode",
        "ai",
        "postFeedback",
        body=FeedbackBody,
        response=ANY_OBJECT,
    ),
    Operation(
        "GET",
        "/v1/inferences/{inference_id}",
        "A recorded inference with its feedback",
        "ai",
        "getInference",
        response=ANY_OBJECT,
    ),
    Operation("GET", "/v1/status", "Routes, cache and recorder health", "meta", "getStatus", response=ANY_OBJECT),
]
