"""Agent configs: the models (tools, internal tools, skills, limits), their checks, and the internal tools' schemas."""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from ..errors import InvalidRequestError, ValidationError

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
INTERNAL_TOOL_NAMES = ("plan", "memory", "code_execution", "load_skill", "image_generation", "web_search")


class ToolSpec(BaseModel):
    """One tool an agent may call; ``type`` says who runs it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: Literal["client", "app", "agent", "webhook"] = "client"
    display_name: str | None = None
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    require_approval: bool = False
    app: str | None = None  # app tools
    setup: dict[str, Any] = Field(default_factory=dict)
    input: dict[str, Any] = Field(default_factory=dict)
    agent: str | None = None  # agent tools: a template ref
    url: str | None = None  # webhook tools
    secret: str | None = None  # name in [apps.secrets]
    timeout_s: float = Field(default=10.0, gt=0, le=600)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not TOOL_NAME.match(v):
            raise ValueError("tool names are 1-64 letters, digits, '_' or '-'")
        return v


class InternalTools(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: bool = False
    memory: bool = False
    code_execution: bool = False
    web_search: bool = False  # needs a provider ([agents.web_search]); without one, asking for it is refused
    image_generation: ImageGeneration | None = None


class ImageGeneration(BaseModel):
    """Where ``image_generation`` goes: an app (run with ``{"prompt", **input}``) or an image model."""

    model_config = ConfigDict(extra="forbid")

    app: str | None = None
    model: str | None = None
    setup: dict[str, Any] = Field(default_factory=dict)
    input: dict[str, Any] = Field(default_factory=dict)


InternalTools.model_rebuild()


class Skill(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    content: str | None = None
    url: str | None = None


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    system_prompt: str = ""
    tools: list[ToolSpec] = Field(default_factory=list)
    internal_tools: InternalTools = Field(default_factory=InternalTools)
    skills: list[Skill] = Field(default_factory=list)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_steps: int = Field(default=10, ge=1, le=100)
    max_depth: int = Field(default=3, ge=0, le=10)
    description: str = ""


def check_tools(config: AgentConfig, *, web_search: bool = False) -> None:
    """422 ``invalid_tool_schema`` / ``invalid_tool`` for tools that cannot work; ``web_search``:
    whether a search provider is configured."""
    gen = config.internal_tools.image_generation
    if gen is not None and bool(gen.app) == bool(gen.model):
        raise ValidationError("image_generation needs exactly one of 'app' or 'model'", code="invalid_internal_tool")
    if config.internal_tools.web_search and not web_search:
        raise ValidationError(
            "internal tool web_search is not available: no web search provider is configured",
            code="web_search_unavailable",
        )
    seen: set[str] = set()
    for tool in config.tools:
        if tool.name in seen or tool.name in INTERNAL_TOOL_NAMES:
            raise ValidationError(f"duplicate or reserved tool name {tool.name!r}", code="invalid_tool")
        seen.add(tool.name)
        problem = schema_problem(tool.parameters)
        if problem is None and tool.parameters.get("type") != "object":
            problem = "a tool's parameters must be a JSON Schema of type 'object'"
        if problem:
            raise ValidationError(f"tool {tool.name!r}: invalid JSON Schema: {problem}", code="invalid_tool_schema")
        need = {"app": tool.app, "agent": tool.agent, "webhook": tool.url}
        if tool.type in need and not need[tool.type]:
            field = {"app": "app", "agent": "agent", "webhook": "url"}[tool.type]
            raise ValidationError(f"{tool.type} tool {tool.name!r} needs {field!r}", code="invalid_tool")


def schema_problem(schema: Any, path: str = "$", depth: int = 0) -> str | None:
    """What makes ``schema`` an invalid JSON Schema (the subset tools use), or None."""
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return f"{path}: a schema must be an object"
    if depth > 32:
        return f"{path}: nested too deep"
    typ = schema.get("type")
    if typ is not None:
        types = typ if isinstance(typ, list) else [typ]
        if not types or any(not isinstance(t, str) or t not in JSON_TYPES for t in types):
            return f"{path}.type: {typ!r} is not a JSON Schema type"
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            return f"{path}.properties must be an object"
        for key, sub in props.items():
            if (p := schema_problem(sub, f"{path}.properties.{key}", depth + 1)) is not None:
                return p
    req = schema.get("required")
    if req is not None and (not isinstance(req, list) or any(not isinstance(r, str) for r in req)):
        return f"{path}.required must be an array of strings"
    if "items" in schema and (p := schema_problem(schema["items"], f"{path}.items", depth + 1)) is not None:
        return p
    if "enum" in schema and not isinstance(schema["enum"], list):
        return f"{path}.enum must be an array"
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = schema[key]
            if not isinstance(options, list) or not options:
                return f"{path}.{key} must be a non-empty array"
            for i, sub in enumerate(options):
                if (p := schema_problem(sub, f"{path}.{key}[{i}]", depth + 1)) is not None:
                    return p
    add = schema.get("additionalProperties")
    if add is not None and not isinstance(add, bool):
        return schema_problem(add, f"{path}.additionalProperties", depth + 1)
    return None


INTERNAL_SCHEMAS: dict[str, dict[str, Any]] = {
    "plan": {
        "description": "Keep a todo list for this chat: send the whole list each time.",
        "parameters": {
            "type": "object",
            "properties": {
                "todos": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"title": {"type": "string"}, "done": {"type": "boolean"}},
                        "required": ["title"],
                    },
                }
            },
            "required": ["todos"],
        },
    },
    "memory": {
        "description": "Key-value memory kept across chats for this agent and user.",
        "parameters": {
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["get", "set", "delete", "list"]},
                "key": {"type": "string"},
                "value": {},
            },
            "required": ["action"],
        },
    },
    "code_execution": {
        "description": "Run Python code in a sandbox (no network, limited CPU/memory/time); returns stdout.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    },
    "image_generation": {
        "description": "Generate an image from a text prompt; returns the image file(s).",
        "parameters": {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
    },
    "web_search": {
        "description": "Search the web; returns the top results (title, url, snippet).",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
    "load_skill": {
        "description": "Load the full instructions of one of the skills listed in the system prompt.",
        "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    },
}


def parse_config(data: Any, *, web_search: bool = False) -> AgentConfig:
    """``data`` (an object or YAML) checked; ``web_search``: whether a search provider is configured."""
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as err:
            raise InvalidRequestError(f"agent YAML does not parse: {err}", code="invalid_yaml") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("an agent config must be an object", code="invalid_agent_config")
    try:
        config = AgentConfig.model_validate(data)
    except PydanticValidationError as err:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in err.errors()]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        raise ValidationError(
            f"invalid agent config: {summary}", code="invalid_agent_config", details=problems
        ) from None
    check_tools(config, web_search=web_search)
    return config


def internal_enabled(cfg: AgentConfig) -> set[str]:
    """The internal tools this config turns on."""
    names = {n for n in ("plan", "memory", "code_execution", "web_search") if getattr(cfg.internal_tools, n)}
    if cfg.internal_tools.image_generation is not None:
        names.add("image_generation")
    if cfg.skills:
        names.add("load_skill")
    return names


def tool_defs(cfg: AgentConfig) -> list[dict[str, Any]]:
    """The tools offered to the model, in OpenAI's ``tools`` shape: the config's, then internal ones."""
    defs = [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in cfg.tools
    ]
    for name in sorted(internal_enabled(cfg), key=list(INTERNAL_SCHEMAS).index):
        defs.append({"type": "function", "function": {"name": name, **INTERNAL_SCHEMAS[name]}})
    return defs


def tool_spec(chat: dict[str, Any], name: str) -> ToolSpec | None:
    """The chat's config tool called ``name`` (``None``: an internal tool, or none at all)."""
    for t in chat["config"].get("tools", []):
        if t["name"] == name:
            return ToolSpec.model_validate(t)
    return None
