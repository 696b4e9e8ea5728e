"""Agent tool plumbing: config models, JSON Schema checks, and the sandboxed ``code_execution``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import sys
import tempfile
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import ValidationError

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
    web_search: bool = False  # pluggable; no provider is configured yet, so asking for it is refused
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


def check_tools(config: AgentConfig) -> None:
    """422 ``invalid_tool_schema`` / ``invalid_tool`` for tools that cannot work."""
    gen = config.internal_tools.image_generation
    if gen is not None and bool(gen.app) == bool(gen.model):
        raise ValidationError("image_generation needs exactly one of 'app' or 'model'", code="invalid_internal_tool")
    if config.internal_tools.web_search:
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


# -- code_execution ---------------------------------------------------------------------------

_CHILD = r"""
import sys
def _guard(event, args):
    if event.startswith("socket.") or event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.fork"):
        raise PermissionError(f"{event} is not allowed in code_execution (no network, no processes)")
sys.addaudithook(_guard)
_src = sys.stdin.read()
exec(compile(_src, "<code>", "exec"), {"__name__": "__main__"})
"""


class CodeLimits(BaseModel):
    cpu_s: int = 2
    memory_mb: int = 256
    wall_s: float = 5.0
    output_bytes: int = 64 * 1024


async def run_code(code: str, limits: CodeLimits | None = None) -> dict[str, Any]:
    """Run Python in a fresh process: rlimits on CPU time and memory, a wall-clock kill, a temp
    dir as cwd and home, an audit hook refusing sockets and subprocesses (and no network
    namespace at all where ``unshare -n`` works)."""
    limits = limits or CodeLimits()
    mem = limits.memory_mb * 1024 * 1024

    def preexec() -> None:  # runs in the child, before exec
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024, 16 * 1024 * 1024))
        os.setsid()

    with tempfile.TemporaryDirectory(prefix="runyard-code-") as tmp:
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [sys.executable, "-I", "-S", "-c", _CHILD]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp,
            env=env,
            preexec_fn=preexec,
        )
        killed = None
        try:
            out, err = await asyncio.wait_for(proc.communicate(code.encode()), limits.wall_s)
        except asyncio.TimeoutError:
            killed = "wall_clock"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            out, err = await proc.communicate()
        rc = proc.returncode
    stderr = err[-limits.output_bytes :].decode(errors="replace")
    if killed is None and rc is not None and rc < 0:
        import signal

        sig = -rc
        killed = "cpu_time" if sig in (signal.SIGXCPU, signal.SIGKILL) else f"signal {sig}"
    if killed is None and "MemoryError" in stderr:
        killed = "memory"
    if killed is None and "is not allowed in code_execution" in stderr:
        killed = "network"
    return {
        "stdout": out[: limits.output_bytes].decode(errors="replace"),
        "stderr": stderr,
        "exit_code": rc,
        "killed": killed,
        "ok": rc == 0 and killed is None,
    }
