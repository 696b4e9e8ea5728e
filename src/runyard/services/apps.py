"""The app registry: Python apps from configured modules, built-in model apps, ref resolution.

A ref is ``namespace/name`` or ``namespace/name@X`` where X is a version, ``latest`` (the
newest by semver, also the meaning of no suffix) or an alias from ``[apps.aliases]``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..apps import AppContext, AppDefinition, app, definition_of, version_key
from ..config import ConfigError, RunyardConfig
from ..errors import NotFoundError, RequirementsNotMetError
from ..files import File
from ..inference import ChatRequest, Message
from .ai import ChatOptions

__all__ = ["AppRegistry", "import_app_module"]


def import_app_module(name: str, config_dir: Path | None) -> ModuleType:
    """Import an ``[apps] modules`` entry, looking in the config file's folder and the working directory
    too; one that cannot be imported is a :class:`ConfigError` saying where it was looked for."""
    for folder in (Path.cwd(), config_dir):  # the config's folder ends up first
        if folder is not None and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
            raise  # the module itself imports something missing: its own error says what
        where = ", ".join(dict.fromkeys(str(f) for f in (config_dir, Path.cwd()) if f is not None))
        raise ConfigError(f"[apps] modules: cannot import {name!r} (looked in {where} and the Python path)") from None


class AppRegistry:
    def __init__(self, config: RunyardConfig) -> None:
        self.config = config
        self._apps: dict[str, dict[str, AppDefinition]] = {}
        self._loaded = False

    def load(self) -> None:
        """Import the configured modules and register their apps (idempotent)."""
        if self._loaded:
            return
        if self.config.apps.builtin:
            for target in (ModelChat, ModelEmbed, ChatBatch):
                self.register(definition_of(target))
        for module_name in self.config.apps.modules:
            module = import_app_module(module_name, self.config.source_dir)
            for obj in list(vars(module).values()):
                definition = definition_of(obj)
                if definition is not None and getattr(obj, "__module__", None) == module.__name__:
                    self.register(definition)
        self._loaded = True

    def register(self, definition: AppDefinition | None) -> None:
        if definition is None:
            return
        versions = self._apps.setdefault(definition.name, {})
        existing = versions.get(definition.version)
        if existing is not None and existing.target is not definition.target:
            raise ValueError(f"app {definition.ref} is defined twice")
        versions[definition.version] = definition

    # -- lookup ---------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._apps)

    def versions(self, name: str) -> list[AppDefinition]:
        versions = self._apps.get(name)
        if not versions:
            raise NotFoundError(f"unknown app {name!r}", code="app_not_found")
        return sorted(versions.values(), key=lambda d: version_key(d.version), reverse=True)

    def aliases(self, name: str) -> dict[str, str]:
        return dict(self.config.apps.aliases.get(name, {}))

    def resolve(self, ref: str) -> AppDefinition:
        """The app a ref names; 404 ``app_not_found`` / ``version_not_found`` / ``alias_not_found``."""
        name, _, suffix = ref.strip().partition("@")
        name = self.qualify(name)
        newest = self.versions(name)[0]
        if suffix in ("", "latest"):
            return newest
        versions = self._apps[name]
        if suffix in versions:
            return versions[suffix]
        alias = self.aliases(name).get(suffix)
        if alias is not None:
            if alias not in versions:
                raise NotFoundError(
                    f"alias {name}@{suffix} points at version {alias}, which is not loaded", code="version_not_found"
                )
            return versions[alias]
        if suffix[:1].isdigit():
            known = ", ".join(d.version for d in self.versions(name))
            raise NotFoundError(f"app {name} has no version {suffix} (known: {known})", code="version_not_found")
        raise NotFoundError(f"app {name} has no alias {suffix!r}", code="alias_not_found")

    def qualify(self, name: str) -> str:
        """A bare name (``my-app``) in ``[apps] default_namespace``; unset, the one loaded app of that
        name in any namespace (several: 404 ``ambiguous_app``). Names with a namespace stay as they are."""
        if "/" in name or not name:
            return name
        namespace = self.config.apps.default_namespace
        if namespace:
            return f"{namespace}/{name}"
        found = [n for n in self._apps if n.rpartition("/")[2] == name]
        if len(found) > 1:
            raise NotFoundError(
                f"app name {name!r} is in several namespaces ({', '.join(sorted(found))}): give one, "
                "or set [apps] default_namespace",
                code="ambiguous_app",
            )
        return found[0] if found else name

    def all(self) -> list[AppDefinition]:
        return [self.versions(name)[0] for name in self.names()]

    # -- requirements ---------------------------------------------------------
    def check_requirements(self, definition: AppDefinition) -> dict[str, str]:
        """The app's secrets if every requirement is met; ``RequirementsNotMetError`` otherwise."""
        apps = self.config.apps
        missing = [
            r.to_dict()
            for r in definition.requirements
            if not (
                (r.type == "secret" and apps.secrets.get(r.key))
                or (r.type == "integration" and r.key in apps.integrations)
            )
        ]
        if missing:
            keys = ", ".join(f"{m['type']}:{m['key']}" for m in missing)
            raise RequirementsNotMetError(f"{definition.ref} requirements not met: {keys}", details=missing)
        return {r.key: apps.secrets[r.key] for r in definition.requirements if r.type == "secret"}


# -- built-in model apps --------------------------------------------------------


class ChatInput(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="a configured model or 'provider::model'")
    prompt: str | None = Field(default=None, description="one user turn (instead of messages)")
    messages: list[Message] | None = None
    system: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    batch_mode: bool = Field(default=False, description="through the provider's batch API, at its batch price")


class ChatOutput(BaseModel):
    content: str | None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    finish_reason: str
    usage: dict[str, int]
    model: str
    provider: str
    inference_id: str
    cost: float | None = Field(default=None, description="USD, at the batch price when a batch answered")
    batch_id: str | None = Field(default=None, description="the provider's batch that answered (batch_mode)")
    metadata: dict[str, Any] = Field(default_factory=dict, description="as a chat's _metadata")


@app("runyard/chat", version="1.0.0", description="Chat with any configured model.")
class ModelChat:
    async def run(self, input: ChatInput, ctx: AppContext) -> ChatOutput:
        messages = [m.model_dump(exclude_none=True) for m in input.messages or []]
        if input.system:
            messages.insert(0, {"role": "system", "content": input.system})
        if input.prompt:
            messages.append({"role": "user", "content": input.prompt})
        extra = input.model_extra or {}
        request = ChatRequest.model_validate(
            {
                **extra,
                "model": input.model,
                "messages": messages,
                "temperature": input.temperature,
                "max_tokens": input.max_tokens,
                "response_format": input.response_format,
                "tools": input.tools,
            }
        )
        options = ChatOptions(batch=True, batch_progress=_batch_progress(ctx)) if input.batch_mode else None
        result = await ctx.ai.chat(request, options=options)
        metadata = {
            "request_id": result.inference_id,
            "vendor": result.provider,
            "model": result.model,
            "provider_model": result.provider_model,
            "cost": result.cost,
            "batch_id": result.batch_id,
            "latency_ms": round(result.latency_ms, 3),
        }
        return ChatOutput(
            content=result.content,
            tool_calls=[tc.to_openai() for tc in result.tool_calls],
            finish_reason=result.finish_reason,
            usage=result.usage.to_dict(),
            model=result.model,
            provider=result.provider,
            inference_id=result.inference_id,
            cost=result.cost,
            batch_id=result.batch_id,
            metadata=metadata,
        )


def _batch_progress(ctx: AppContext) -> Callable[[float, str], None]:
    """A batch's progress on the task: each poll as progress, each new state also a log line; a
    cancelled task raises here, which cancels the upstream batch."""
    said: list[str] = []

    def report(fraction: float, message: str) -> None:
        ctx.check_cancelled()
        ctx.progress(fraction, message)
        if not said or said[-1] != message:
            said.append(message)
            ctx.log(message)

    return report


class EmbedInput(BaseModel):
    model: str
    input: str | list[str] = Field(min_length=1)
    dimensions: int | None = Field(default=None, ge=1)


class EmbedOutput(BaseModel):
    embeddings: list[list[float]]
    usage: dict[str, int]
    model: str
    provider: str
    inference_id: str


@app("runyard/embed", version="1.0.0", description="Embed text with any configured embedding model.")
class ModelEmbed:
    async def run(self, input: EmbedInput, ctx: AppContext) -> EmbedOutput:
        texts = [input.input] if isinstance(input.input, str) else list(input.input)
        result = await ctx.ai.embed(texts, input.model, dimensions=input.dimensions)
        return EmbedOutput(
            embeddings=result.embeddings,
            usage=result.usage.to_dict(),
            model=result.model,
            provider=result.provider,
            inference_id=result.inference_id,
        )


class BatchInput(BaseModel):
    file: File = Field(description="JSONL: one chat request per line ({custom_id?, body} or a plain body)")
    concurrency: int = Field(default=4, ge=1, le=64)


class BatchOutput(BaseModel):
    results: File
    total: int
    succeeded: int
    failed: int


@app(
    "runyard/chat-batch", version="1.0.0", description="Run a JSONL file of chat requests; writes a JSONL results file."
)
class ChatBatch:
    """Each result line is ``{custom_id, response | error}`` in input order; bad lines fail alone."""

    async def run(self, input: BatchInput, ctx: AppContext) -> BatchOutput:
        import asyncio

        import orjson

        from ..errors import RunyardError

        lines = [line for line in input.file.read_bytes().splitlines() if line.strip()]
        semaphore = asyncio.Semaphore(input.concurrency)
        done = 0

        async def one(index: int, line: bytes) -> dict[str, Any]:
            nonlocal done
            custom_id: Any = f"request-{index}"
            try:
                item = orjson.loads(line)
                if not isinstance(item, dict):
                    raise ValueError("a line must be a JSON object")
                custom_id = item.get("custom_id", custom_id)
                body = item.get("body", item)
                request = ChatRequest.model_validate({k: v for k, v in body.items() if k != "custom_id"})
                if not request.model:
                    raise ValueError("'model' is required on every batch line")
                async with semaphore:
                    ctx.check_cancelled()
                    result = await ctx.ai.chat(request)
                answer: dict[str, Any] = {
                    "custom_id": custom_id,
                    "response": {
                        "content": result.content,
                        "tool_calls": [tc.to_openai() for tc in result.tool_calls],
                        "finish_reason": result.finish_reason,
                        "usage": result.usage.to_dict(),
                        "model": result.model,
                        "provider": result.provider,
                        "inference_id": result.inference_id,
                        "cost": result.cost,
                    },
                }
            except (RunyardError, ValueError) as err:
                code = getattr(err, "code", "invalid_request")
                answer = {"custom_id": custom_id, "error": {"code": code, "message": str(err)}}
            done += 1
            ctx.progress(done / len(lines), f"{done}/{len(lines)}")
            return answer

        results = await asyncio.gather(*(one(i, line) for i, line in enumerate(lines)))
        failed = sum(1 for r in results if "error" in r)
        body = b"".join(orjson.dumps(r) + b"\n" for r in results)
        out = File(data=body, filename="results.jsonl", content_type="application/jsonl")
        return BatchOutput(results=out, total=len(results), succeeded=len(results) - failed, failed=failed)
