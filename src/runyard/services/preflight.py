"""Up-front checks of what a workflow or an agent needs from this gateway, so that a definition that
cannot run is refused when it is validated, published or created, not when it runs.

A workflow's ``function`` blocks must name a module in ``[apps] modules`` and a function in it; its
``llm`` models, ``app`` refs and ``agent`` templates (and inline agents' models) must resolve. Values
that are templates (``{{ ... }}``) are only known at run time and are not checked.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import RunyardError, ValidationError

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["check_agent_model", "workflow_problems"]


async def workflow_problems(definition: dict[str, Any], gateway: Gateway) -> list[dict[str, str]]:
    """One ``{block, code, message}`` per thing the definition names that this gateway lacks."""
    problems: list[dict[str, str]] = []
    for bid, block in _blocks(definition.get("blocks") or []):
        kind = block.get("kind")
        try:
            if kind == "function" and _static(block.get("function")):
                _check_function(block["function"], gateway.config.apps.modules)
            elif kind == "llm" and _static(block.get("model")):
                gateway.ai.resolve(block["model"])
            elif kind == "app" and _static(block.get("app")):
                gateway.apps.resolve(block["app"])
            elif kind == "agent":
                await _check_agent(block.get("agent"), gateway)
        except RunyardError as err:
            problems.append({"block": bid, "code": err.code, "message": err.message})
    return problems


def check_agent_model(model: str | None, gateway: Gateway) -> None:
    """422 ``model_not_found`` when an agent names a model this gateway cannot resolve (None: routed)."""
    if model is None or not _static(model):
        return
    try:
        gateway.ai.resolve(model)
    except RunyardError as err:
        raise ValidationError(f"agent model {model!r}: {err.message}", code="model_not_found") from None


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


async def _check_agent(spec: Any, gateway: Gateway) -> None:
    if isinstance(spec, dict):
        model = spec.get("model")
        check_agent_model(model if isinstance(model, str) else None, gateway)
    elif _static(spec):
        await gateway.agents.get_template(spec)
