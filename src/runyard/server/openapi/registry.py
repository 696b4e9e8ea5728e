"""What a route module declares for the API description: one :class:`Operation` per route and method.

Declarations sit next to the routes (``operations = [...]`` beside ``routes = [...]``) and name the
pydantic models the handler validates with, so the spec cannot drift from the code. Error
answers are described by an :class:`ErrorShape` (Runyard's ``{"error": {...}}`` or an adapter's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

Schema = dict[str, Any]
Body = type[BaseModel] | Schema
Security = Literal["bearer", "speedpix", "signed_url", "none"]

__all__ = [
    "ANY_OBJECT",
    "BINARY",
    "IDEMPOTENCY_KEY",
    "OPENAI_ERROR",
    "RUNYARD_ERROR",
    "SSE",
    "Body",
    "ErrorShape",
    "Operation",
    "Param",
    "Schema",
    "openai_operation",
]

ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}
BINARY: Schema = {"type": "string", "format": "binary"}
SSE: Schema = {"description": "A stream of events, each a JSON object (server-sent events end with `data: [DONE]`)"}


@dataclass(frozen=True)
class ErrorShape:
    """How one API family answers errors: its JSON schema and media type."""

    name: str
    schema: Schema
    media_type: str = "application/json"


RUNYARD_ERROR = ErrorShape(
    "RunyardError",
    {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "machine-readable, e.g. `validation_error`"},
                    "message": {"type": "string"},
                    "type": {"type": "string", "description": "the error class, e.g. `invalid_request`"},
                    "details": {"description": "per-field problems for `validation_error`, else extra data"},
                },
            }
        },
    },
)


OPENAI_ERROR = ErrorShape(
    "OpenAIError",
    {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string", "description": "e.g. `invalid_request`"},
                    "param": {"type": ["string", "null"], "description": "the offending parameter, if one"},
                    "code": {"type": ["string", "null"], "description": "machine-readable, e.g. `invalid_value`"},
                },
            }
        },
    },
)
"""OpenAI's error object (``error.message/type/param/code``), as the OpenAI-compatible routes answer."""


@dataclass(frozen=True)
class Param:
    """A query or header parameter (path parameters come from the route's path)."""

    name: str
    location: Literal["query", "header"] = "query"
    schema: Schema = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Operation:
    """One method on one route path (Starlette syntax: ``{name}``, ``{name:path}``, ``{name:int}``).

    ``body``: a pydantic model (its ``model_json_schema()``) or a schema, sent as ``body_media``
    (several media types: ``bodies``). ``response``: the success answer, likewise, as
    ``response_media``; ``stream``: also answers ``text/event-stream`` when the body asks for it.
    ``public``: no credentials needed. ``links``: OpenAPI links from the success answer to
    other operations (by ``operationId``) for ids that flow (create -> get -> cancel).
    """

    method: str
    path: str
    summary: str
    tag: str
    operation_id: str
    body: Body | None = None
    body_media: str = "application/json"
    bodies: dict[str, Body] | None = None
    body_required: bool = True
    response: Body | None = None
    response_media: str = "application/json"
    status: int = 200
    also: tuple[int, ...] = ()  # other success statuses, same answer (e.g. 202 while still running)
    stream: bool = False
    params: tuple[Param, ...] = ()
    errors: ErrorShape = RUNYARD_ERROR
    security: Security = "bearer"
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""


IDEMPOTENCY_KEY = Param("Idempotency-Key", "header", description="a retry with the same key gets the first answer")


def openai_operation(method: str, path: str, summary: str, operation_id: str, **kwargs: Any) -> Operation:
    """An OpenAI-compatible route: tagged ``openai``, OpenAI's error shape, a JSON object by default."""
    kwargs.setdefault("response", ANY_OBJECT)
    return Operation(method, path, "OpenAI: " + summary, "openai", operation_id, errors=OPENAI_ERROR, **kwargs)
