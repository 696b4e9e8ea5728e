"""The API description: route modules declare :class:`Operation` s next to their routes,
:func:`build_spec` turns them into OpenAPI 3.1, :func:`doc_routes` serves it and the docs page."""

from .docs import DOC_PATHS, doc_routes
from .registry import (
    ANY_OBJECT,
    BINARY,
    IDEMPOTENCY_KEY,
    OPENAI_ERROR,
    RUNYARD_ERROR,
    SSE,
    ErrorShape,
    Operation,
    Param,
    openai_operation,
)
from .spec import build_spec, spec_path

__all__ = [
    "ANY_OBJECT",
    "BINARY",
    "DOC_PATHS",
    "IDEMPOTENCY_KEY",
    "OPENAI_ERROR",
    "RUNYARD_ERROR",
    "SSE",
    "ErrorShape",
    "Operation",
    "Param",
    "build_spec",
    "doc_routes",
    "openai_operation",
    "spec_path",
]
