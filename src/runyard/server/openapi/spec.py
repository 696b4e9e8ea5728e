"""Build the OpenAPI 3.1 document from the declared :class:`Operation` s (one source: the route modules)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .registry import RUNYARD_ERROR, SSE, Body, ErrorShape, Operation, Schema

__all__ = ["build_spec", "spec_path"]

_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
_CONVERTER_SCHEMAS: dict[str | None, Schema] = {
    None: {"type": "string"},
    "str": {"type": "string"},
    "path": {"type": "string", "description": "may contain `/`"},
    "int": {"type": "integer", "minimum": 0},
}
_REF = "#/components/schemas/{model}"


def spec_path(route_path: str) -> str:
    """``/v1/workflows/{wid:path}`` -> ``/v1/workflows/{wid}``."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", route_path)


def _models(operations: list[Operation]) -> list[type[BaseModel]]:
    seen: dict[type[BaseModel], None] = {}
    for op in operations:
        for body in (op.body, op.response, *(op.bodies or {}).values()):
            if isinstance(body, type) and issubclass(body, BaseModel):
                seen[body] = None
    return list(seen)


class _Schemas:
    """Every pydantic model's schema, generated together (shared definitions, unique names)."""

    def __init__(self, models: list[type[BaseModel]]) -> None:
        refs, defs = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
        self.refs = {model: ref for (model, _mode), ref in refs.items()}
        self.components: dict[str, Schema] = dict(defs.get("$defs", {}))

    def of(self, body: Body) -> Schema:
        if isinstance(body, type):
            return dict(self.refs[body])
        return body


def _error_response(shape: ErrorShape) -> dict[str, Any]:
    ours: Schema = {"$ref": _REF.format(model=RUNYARD_ERROR.name)}
    content: dict[str, Any] = {RUNYARD_ERROR.media_type: {"schema": ours}}
    if shape is not RUNYARD_ERROR:
        theirs: Schema = {"$ref": _REF.format(model=shape.name)}
        if shape.media_type == RUNYARD_ERROR.media_type:  # the guard's errors (401, 429) are ours
            content[shape.media_type] = {"schema": {"anyOf": [theirs, ours]}}
        else:
            content[shape.media_type] = {"schema": theirs}
    return {"description": "An error: a typed, machine-readable code (never a bare 500 page).", "content": content}


def _operation(op: Operation, schemas: _Schemas) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": m.group(1), "in": "path", "required": True, "schema": _CONVERTER_SCHEMAS.get(m.group(2), {})}
        for m in _PARAM.finditer(op.path)
    ]
    params += [
        {"name": p.name, "in": p.location, "required": p.required, "schema": p.schema}
        | ({"description": p.description} if p.description else {})
        for p in op.params
    ]
    success: dict[str, Any] = {"description": "Success"}
    if op.response is not None:
        content = {op.response_media: {"schema": schemas.of(op.response)}}
        if op.stream:
            content["text/event-stream"] = {"schema": SSE}
        success["content"] = content
    if op.links:
        success["links"] = op.links
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": params,
        "responses": {
            **{str(status): success for status in (op.status, *op.also)},
            "4XX": _error_response(op.errors),
            "5XX": _error_response(op.errors),
        },
    }
    if op.description:
        out["description"] = op.description
    bodies = op.bodies or ({op.body_media: op.body} if op.body is not None else {})
    if bodies:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {media: {"schema": schemas.of(body)} for media, body in bodies.items()},
        }
    out["security"] = {"bearer": [{"bearer": []}, {"apiKey": []}], "speedpix": [{"speedpix": []}]}.get(op.security, [])
    return out


def build_spec(operations: Iterable[Operation], *, version: str, errors: Iterable[ErrorShape] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``operations`` (and the error shapes they name)."""
    ops = list(operations)
    schemas = _Schemas(_models(ops))
    components = schemas.components
    for shape in (RUNYARD_ERROR, *errors, *(op.errors for op in ops)):
        components[shape.name] = shape.schema
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        item = paths.setdefault(spec_path(op.path), {})
        method = op.method.lower()
        if method in item:
            raise ValueError(f"{op.method} {op.path} is declared twice")
        item[method] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Runyard",
            "version": version,
            "description": "Runyard's gateway: the native /v1 API, the OpenAI-compatible API and the protocol "
            "adapters (TensorZero, Sim, SpeedPix, inference.sh). Every route but /healthz, /openapi.json and /docs "
            "needs an API key when keys are configured.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <api key>`"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "speedpix": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-ca-signature",
                    "description": "SpeedPix app signature (HMAC-SHA256 over the request, per app secret)",
                },
            },
        },
    }
