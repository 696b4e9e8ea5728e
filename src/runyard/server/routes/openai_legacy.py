"""OpenAI's ``POST /v1/completions`` (legacy text completions, answered by the chat service)
and ``POST /v1/moderations`` (forwarded to a provider that offers moderation)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import NotFoundError, RunyardError, error_for_status
from ...inference import ChatOutcome, ChatRequest, TokenUsage
from ...providers import Provider
from ...services.ai import CallContext, ChatStream
from ...services.openai_params import UnsupportedParameterError, check_chat_params, invalid
from ..http import (
    DONE,
    EventStream,
    caller_key_id,
    gateway,
    idempotency_key,
    idempotent,
    json_response,
    read_body,
    sse_error,
    sse_event,
    validate_json,
)
from ..openapi import IDEMPOTENCY_KEY, openai_operation


class CompletionRequest(BaseModel):
    """A legacy completion; parameters beyond these pass through to the chat request."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    prompt: str | list[str]
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None

    def chat(self) -> ChatRequest:
        prompt = self.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise UnsupportedParameterError("send one prompt per request (a string)", param="prompt")
            prompt = prompt[0]
        if self.echo:
            raise UnsupportedParameterError("echo is not supported", param="echo")
        if self.suffix:
            raise UnsupportedParameterError("suffix (insertion) is not supported", param="suffix")
        if self.best_of not in (None, 1):
            raise UnsupportedParameterError("best_of > 1 is not supported", param="best_of")
        check_chat_params(self.model_extra, self.n)
        fields = self.model_dump(exclude_none=True, exclude={"prompt", "n", "echo", "suffix", "best_of", "stream"})
        fields["messages"] = [{"role": "user", "content": prompt}]
        fields.pop("stream_options", None)
        return ChatRequest.model_validate(fields)


def _completion(result: ChatOutcome, created: int, text: str | None, finish: str | None) -> dict[str, Any]:
    return {
        "id": "cmpl-" + result.inference_id,
        "object": "text_completion",
        "created": created,
        "model": result.model,
        "choices": [{"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}],
    }


def _usage(usage: TokenUsage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


async def completions(request: Request) -> Response:
    raw = await read_body(request)
    body = validate_json(CompletionRequest, raw)
    chat = body.chat()
    ctx = CallContext(api_key_id=caller_key_id(request))
    service = gateway(request).ai
    created = int(time.time())
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return EventStream(_events(await service.open_stream(chat, ctx), created, include_usage))

    async def produce() -> Response:
        result = await service.chat(chat, ctx)
        out = _completion(result, created, result.content, result.finish_reason)
        out["usage"] = _usage(result.usage)
        return json_response(out)

    return await idempotent(request, idempotency_key(request), raw, produce)


async def _events(stream: ChatStream, created: int, include_usage: bool) -> AsyncIterator[bytes]:
    result = stream.result
    try:
        async for delta in stream:
            if delta.content or delta.finish_reason:
                yield sse_event(_completion(result, created, delta.content, delta.finish_reason))
    except RunyardError as err:
        yield sse_error(err)
        return
    if include_usage:
        final = _completion(result, created, None, None)
        final["choices"] = []
        final["usage"] = _usage(result.usage)
        yield sse_event(final)
    yield DONE


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str | list[str] | list[dict[str, Any]] = Field(min_length=1)
    model: str | None = None


async def moderations(request: Request) -> Response:
    body = validate_json(ModerationRequest, await read_body(request))
    provider, model = _moderator(request, body.model)
    forwarded: dict[str, Any] = {"input": body.input}
    if model:
        forwarded["model"] = model
    moderate = getattr(provider, "moderate")  # noqa: B009 - checked by _moderator
    return json_response(await moderate(forwarded))


def _moderator(request: Request, model: str | None) -> tuple[Provider, str | None]:
    """The provider to ask and the model name to send it: the model's own route when the model
    is one of Runyard's (configured, or ``provider::model``), else the first provider offering it."""
    ai = gateway(request).ai
    if model:
        try:
            routes = ai.resolve(model)
        except NotFoundError:
            routes = []
        for route in routes:
            if hasattr(route.provider, "moderate"):
                return route.provider, route.model
        if routes:
            raise invalid(f"model {model!r} is served by no provider that offers moderation", "model")
    for provider in ai.providers.values():  # the first that offers it and has its key (if it needs one)
        if hasattr(provider, "moderate") and (provider.config.api_key_env is None or provider.config.api_key()):
            return provider, model
    raise error_for_status(
        501,
        "moderation_not_available",
        "no configured provider offers moderation (an openai-kind provider forwards to its /moderations)",
    )


routes = [
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/moderations", moderations, methods=["POST"]),
]

# The API description (server/openapi): one declaration per route.
operations = [
    openai_operation(
        "POST",
        "/v1/completions",
        "legacy text completions (answered by the chat service)",
        "createCompletion",
        body=CompletionRequest,
        stream=True,
        params=(IDEMPOTENCY_KEY,),
    ),
    openai_operation(
        "POST",
        "/v1/moderations",
        "moderation (forwarded to a provider that offers it; 501 `moderation_not_available` if none)",
        "createModeration",
        body=ModerationRequest,
    ),
]
