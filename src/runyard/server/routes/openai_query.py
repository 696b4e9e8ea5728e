"""Query parameters of the OpenAI list routes: one pydantic model per route validates them and
describes them in the API description (:func:`query_params`), so the two cannot drift.

A bad value is a 400 naming the parameter (``error.param``, code ``invalid_value``), its message
made from the field's bounds: ``limit must be an integer from 1 to 100``, ``order must be 'asc'
or 'desc'``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.requests import Request

from ...services.openai_params import invalid
from ..openapi import Param

__all__ = ["BatchListQuery", "FileListQuery", "InputItemsQuery", "query_params", "read_query"]

Q = TypeVar("Q", bound=BaseModel)
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
LISTED_PURPOSES = (*PURPOSES, "batch_output")  # a batch's results are listed too


def _digits(value: Any) -> Any:
    """Digits only (no sign, space or exponent), as OpenAI documents its integers in a query."""
    if isinstance(value, str) and not value.isdigit():
        raise ValueError("not a non-negative integer")
    return value


Digits = Annotated[int, BeforeValidator(_digits)]
Order = Literal["asc", "desc"]


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore")  # other parameters are not ours to refuse


class InputItemsQuery(_Query):
    """``GET /v1/responses/{id}/input_items``."""

    order: Order = "desc"
    limit: Digits = Field(default=20, ge=1, le=100)
    after: str | None = Field(default=None, description="an item id: the page after it")


class BatchListQuery(_Query):
    """``GET /v1/batches``."""

    limit: Digits = Field(default=20, ge=1, le=100)
    after: str | None = Field(default=None, description="a batch id: the page after it")


class FileListQuery(_Query):
    """``GET /v1/files``: files uploaded with a purpose (the default page: every one)."""

    order: Order = "desc"
    limit: Digits = Field(default=10_000, ge=1, le=10_000)
    purpose: Literal[LISTED_PURPOSES] | None = None  # type: ignore[valid-type]
    after: str | None = Field(default=None, description="a file id: the page after it")


def read_query(model: type[Q], request: Request) -> Q:
    """The request's query as ``model``; 400 ``invalid_value`` naming the first bad parameter."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as err:
        name = str(err.errors()[0]["loc"][0])
        raise invalid(_problem(name, _schemas(model)[name]), name) from None


def query_params(model: type[BaseModel]) -> tuple[Param, ...]:
    """The model's fields as the operation's query parameters (server/openapi)."""
    return tuple(
        Param(
            name,
            schema={k: v for k, v in schema.items() if k != "description"},
            description=schema.get("description", ""),
        )
        for name, schema in _schemas(model).items()
    )


def _schemas(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each field's JSON schema, an optional one as its non-null branch, without titles."""
    out: dict[str, dict[str, Any]] = {}
    for name, schema in model.model_json_schema()["properties"].items():
        branches = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
        shown = dict(branches[0]) if len(branches) == 1 else {k: v for k, v in schema.items() if k != "anyOf"}
        for key in ("default", "description"):
            if schema.get(key) is not None:
                shown[key] = schema[key]
        shown.pop("title", None)
        out[name] = shown
    return out


def _problem(name: str, schema: dict[str, Any]) -> str:
    enum = schema.get("enum")
    if enum is not None and len(enum) == 2:
        return f"{name} must be {enum[0]!r} or {enum[1]!r}"
    if enum is not None:
        return f"{name} must be one of {', '.join(enum)}"
    if schema.get("type") == "integer":
        return f"{name} must be an integer from {schema['minimum']} to {schema['maximum']}"
    return f"{name} is not valid"
