"""Up-front checks of what a workflow or an agent needs from this gateway, so that a definition that
cannot run is refused when it is validated, published or created, not when it runs.

A workflow's ``function`` blocks must name a module in ``[apps] modules`` and a function in it; its
``llm`` models, ``app`` refs and ``agent`` templates (and inline agents' models) must resolve. Values
that are templates (``{{ ... }}``) are only known at run time and are not checked.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ..errors import RunyardError, ValidationError

__all__ = ["Preflight"]


class Preflight:
    """What a definition names, checked against this gateway's models, apps, agent templates and
    allowed function modules (each collaborator passed in by the composition root)."""

    def __init__(
        self,
        *,
        resolve_model: Callable[[str], Any],
        resolve_app: Callable[[str], Any],
        get_template: Callable[..., Awaitable[Any]],  # (ref, *, viewer): 404 for another workspace's
        modules: list[str],
    ) -> None:
        self.resolve_model = resolve_model
        self.resolve_app = resolve_app
        self.get_template = get_template
        self.modules = modules

    async def workflow_problems(self, definition: dict[str, Any], *, viewer: str | None = None) -> list[dict[str, str]]:
        """One ``{block, code, message}`` per thing the definition names that this gateway lacks
        (``viewer``: the caller's workspace, for whom another workspace's agent template is unknown)."""
        problems: list[dict[str, str]] = []
        for bid, block in _blocks(definition.get("blocks") or []):
            kind = block.get("kind")
            try:
                if kind == "function" and _static(block.get("function")):
                    _check_function(block["function"], self.modules)
                elif kind == "llm" and _static(block.get("model")):
                    self.resolve_model(block["model"])
                elif kind == "app" and _static(block.get("app")):
                    self.resolve_app(block["app"])
                elif kind == "agent":
                    await self._check_agent(block.get("agent"), viewer)
            except RunyardError as err:
                problems.append({"block": bid, "code": err.code, "message": err.message})
        return problems

    def check_agent_model(self, model: str | None) -> None:
        """422 ``model_not_found`` when an agent names a model this gateway cannot resolve (None: routed)."""
        if model is None or not _static(model):
            return
        try:
            self.resolve_model(model)
        except RunyardError as err:
            raise ValidationError(f"agent model {model!r}: {err.message}", code="model_not_found") from None

    async def _check_agent(self, spec: Any, viewer: str | None) -> None:
        if isinstance(spec, dict):
            model = spec.get("model")
            self.check_agent_model(model if isinstance(model, str) else None)
        elif _static(spec):
            await self.get_template(spec, viewer=viewer)


def _blocks(blocks: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for block in blocks:
        if not isinstance(block, dict):
            continue
        bid = str(block.get("id", "?"))
        yield bid, block
        inner = block.get("block")
        if block.get("kind") == "map" and isinstance(inner, dict):
            yield f"{bid}.block", inner


def _static(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and "{{" not in value and "{%" not in value


def _check_function(target: str, allowed: list[str]) -> None:
    module_name, _, attr = target.partition(":")
    if module_name not in allowed:
        raise ValidationError(f"module {module_name!r} is not in [apps] modules", code="function_not_allowed")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValidationError(f"module {module_name!r} does not import: {err}", code="function_not_found") from None
    if not callable(getattr(module, attr, None)):
        raise ValidationError(f"{module_name!r} has no function {attr!r}", code="function_not_found")
