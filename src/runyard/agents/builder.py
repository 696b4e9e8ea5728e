"""The agent tool builder: tools as JSON Schema, in the inference.sh SDK's style.

from runyard.agents import tool, string, integer, app_tool, internal_tools

weather = tool("get_weather").describe("Current weather").param("city", string("City name")).build()
deploy = tool("deploy").param("env", enum_of(["staging", "prod"])).require_approval().build()
tools = internal_tools().plan().memory().code_execution(True).build()
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

__all__ = [
    "ToolBuilder",
    "agent_tool",
    "app_tool",
    "array",
    "boolean",
    "enum_of",
    "integer",
    "internal_tools",
    "number",
    "obj",
    "optional",
    "string",
    "tool",
    "webhook_tool",
]

_OPTIONAL = "x-runyard-optional"


def _schema(kind: str, description: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind}
    if description:
        out["description"] = description
    return out


def string(description: str = "") -> dict[str, Any]:
    return _schema("string", description)


def number(description: str = "") -> dict[str, Any]:
    return _schema("number", description)


def integer(description: str = "") -> dict[str, Any]:
    return _schema("integer", description)


def boolean(description: str = "") -> dict[str, Any]:
    return _schema("boolean", description)


def enum_of(values: list[Any], description: str = "") -> dict[str, Any]:
    out = _schema("string", description) if all(isinstance(v, str) for v in values) else {}
    if description:
        out["description"] = description
    out["enum"] = list(values)
    return out


def array(items: dict[str, Any], description: str = "") -> dict[str, Any]:
    out = _schema("array", description)
    out["items"] = _clean(items)
    return out


def obj(properties: dict[str, dict[str, Any]], description: str = "") -> dict[str, Any]:
    out = _schema("object", description)
    out["properties"] = {k: _clean(v) for k, v in properties.items()}
    out["required"] = [k for k, v in properties.items() if not v.get(_OPTIONAL)]
    return out


def optional(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter the model may leave out (not in ``required``)."""
    return {**schema, _OPTIONAL: True}


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != _OPTIONAL}


class ToolBuilder:
    """``tool("name").display(...).describe(...).param("x", string("…")).require_approval().build()``."""

    def __init__(self, name: str, kind: str = "client") -> None:
        self._spec: dict[str, Any] = {"name": name, "type": kind, "description": ""}
        self._params: dict[str, dict[str, Any]] = {}
        self.fn: Callable[..., Any] | None = None

    def display(self, name: str) -> ToolBuilder:
        self._spec["display_name"] = name
        return self

    def describe(self, description: str) -> ToolBuilder:
        self._spec["description"] = description
        return self

    def param(self, name: str, schema: dict[str, Any]) -> ToolBuilder:
        self._params[name] = schema
        return self

    def require_approval(self, required: bool = True) -> ToolBuilder:
        self._spec["require_approval"] = required
        return self

    def timeout(self, seconds: float) -> ToolBuilder:
        self._spec["timeout_s"] = seconds
        return self

    # app / webhook specifics
    def setup(self, values: dict[str, Any]) -> ToolBuilder:
        self._spec["setup"] = dict(values)
        return self

    def input(self, values: dict[str, Any]) -> ToolBuilder:
        self._spec["input"] = dict(values)
        return self

    def secret(self, name: str) -> ToolBuilder:
        self._spec["secret"] = name
        return self

    def build(self) -> dict[str, Any]:
        params = obj(self._params)
        params.pop("type")
        return {**self._spec, "parameters": {"type": "object", **params}}

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None) -> ToolBuilder:
        """A client tool from a typed function; the SDK agent then runs it by itself."""
        builder = cls(name or fn.__name__)
        doc = inspect.getdoc(fn) or ""
        builder.describe(doc.split("\n\n", 1)[0].strip())
        hints = typing.get_type_hints(fn)
        for pname, param in inspect.signature(fn).parameters.items():
            schema = _type_schema(hints.get(pname, str))
            if param.default is not inspect.Parameter.empty:
                schema = optional(schema)
            builder.param(pname, schema)
        builder.fn = fn
        return builder


def _type_schema(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_null = [a for a in args if a is not type(None)]
        return _type_schema(non_null[0]) if non_null else {"type": "null"}
    if origin is typing.Literal:
        return enum_of(list(args))
    if origin in (list, tuple, set):
        return array(_type_schema(args[0]) if args else {})
    if origin is dict or tp is dict:
        return {"type": "object"}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return {"type": simple[tp]} if tp in simple else {}


tool = ToolBuilder


def app_tool(name: str, ref: str) -> ToolBuilder:
    b = ToolBuilder(name, "app")
    b._spec["app"] = ref
    return b


def agent_tool(name: str, ref: str) -> ToolBuilder:
    b = ToolBuilder(name, "agent").param("message", string("What the sub-agent should do"))
    b._spec["agent"] = ref
    return b


def webhook_tool(name: str, url: str) -> ToolBuilder:
    b = ToolBuilder(name, "webhook")
    b._spec["url"] = url
    return b


class internal_tools:
    """``internal_tools().plan().memory().code_execution(True).build()``."""

    def __init__(self) -> None:
        self._flags: dict[str, Any] = {}

    def plan(self, on: bool = True) -> internal_tools:
        self._flags["plan"] = on
        return self

    def memory(self, on: bool = True) -> internal_tools:
        self._flags["memory"] = on
        return self

    def code_execution(self, on: bool = True) -> internal_tools:
        self._flags["code_execution"] = on
        return self

    def web_search(self, on: bool = True) -> internal_tools:
        self._flags["web_search"] = on
        return self

    def image_generation(self, target: dict[str, Any]) -> internal_tools:
        """``{"app": "org/image-app@latest", "input": {...}}`` or ``{"model": "dall-e"}``."""
        self._flags["image_generation"] = dict(target)
        return self

    def build(self) -> dict[str, Any]:
        return dict(self._flags)
