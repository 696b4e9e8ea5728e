"""What the inference routes share: the call context and vendor-qualified model read off a body,
the native rendering of a chat outcome, and the guarded event stream every protocol's SSE uses."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request

from ..config import MODEL_SEPARATOR
from ..errors import InternalServerError, InvalidRequestError, RunyardError
from ..inference import ChatDelta, ChatOutcome, EmbedOutcome
from ..services.ai import CallContext
from ..services.streams import ChatStream
from .http import DONE, caller_key_id, sse_error

log = logging.getLogger("runyard.server")


def call_context(request: Request, body: dict[str, Any]) -> CallContext:
    """The caller's key and the body's ``tags`` and ``episode_id`` (both taken out of ``body``)."""
    tags = body.pop("tags", None)
    if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
        raise InvalidRequestError("'tags' must be an object of strings", code="invalid_tags")
    episode_id = body.pop("episode_id", None)
    if episode_id is not None:
        episode_id = uuid_str(episode_id, "episode_id")
    return CallContext(episode_id=episode_id, api_key_id=caller_key_id(request), tags=tags)


def uuid_str(value: Any, field: str, *, echo: bool = False) -> str:
    """``value`` as a canonical UUID string; 400 ``invalid_id`` otherwise (``echo``: the message quotes it)."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        shown = f", got {value!r}" if echo else ""
        raise InvalidRequestError(f"'{field}' must be a UUID{shown}", code="invalid_id") from None


def apply_vendor(body: dict[str, Any], *, routing: bool = False) -> str | None:
    """``vendor`` + ``model`` → ``vendor::model``; ``vendor`` alone filters routing (chat only:
    returned when ``routing``)."""
    vendor = body.pop("vendor", None)
    model = body.get("model")
    if vendor:
        if not isinstance(vendor, str):
            raise InvalidRequestError("'vendor' must be a string", code="invalid_vendor")
        if not model:
            if routing:
                return vendor
            raise InvalidRequestError("'vendor' needs a 'model' to call on it", code="missing_model")
        if isinstance(model, str) and MODEL_SEPARATOR not in model:
            body["model"] = f"{vendor}{MODEL_SEPARATOR}{model}"
    return None


def render_chat(result: ChatOutcome) -> dict[str, Any]:
    """A chat outcome in Runyard's own shape (``/v1/ai/chat``, ``/v1/ai/vision``)."""
    return {
        "inference_id": result.inference_id,
        "episode_id": result.episode_id,
        "content": result.content,
        "tool_calls": [tc.to_openai() for tc in result.tool_calls],
        "finish_reason": result.finish_reason,
        "usage": result.usage.to_dict(),
        "model": result.model,
        "provider": result.provider,
        "_metadata": outcome_metadata(result),
    }


def outcome_metadata(result: ChatOutcome | EmbedOutcome) -> dict[str, Any]:
    """The ``_metadata`` of a native answer: who served it, how long it took, what it cost."""
    return {
        "request_id": result.inference_id,
        "vendor": result.provider,
        "model": result.model,
        "provider_model": result.provider_model,
        "latency_ms": round(result.latency_ms, 3),
        "attempts": result.attempts,  # dataclasses: json_response's orjson writes them as objects
        "cost": result.cost,
        "cache_hit": getattr(result, "cache_hit", False),
        "route_reason": getattr(result, "route_reason", None),
    }


async def guarded_stream(stream: ChatStream) -> AsyncIterator[ChatDelta | bytes]:
    """Deltas, then ``[DONE]``; or, on failure, one error event and no ``[DONE]``."""
    try:
        async for delta in stream:
            yield delta
    except RunyardError as err:
        yield sse_error(err)
        return
    except Exception:
        log.exception("stream failed")
        yield sse_error(InternalServerError("stream failed; see the server log"))
        return
    yield DONE
