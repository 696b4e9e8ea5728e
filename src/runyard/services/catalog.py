"""The model catalog: prices for cost accounting, and task/prefer routing among capable models."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Literal

from ..config import ModelConfig, PriceConfig, ProviderConfig, RunyardConfig
from ..errors import InvalidRequestError
from ..inference import ChatRequest

Prefer = Literal["balanced", "cheapest", "smartest"]
Candidates = list[tuple[str, ModelConfig, PriceConfig]]
TASKS = ("general", "reasoning", "coding", "long_context")


@dataclass(frozen=True, slots=True)
class Choice:
    """The models to try, best first, and why the first was picked."""

    models: list[str]
    reason: str


class Catalog:
    def __init__(self, config: RunyardConfig) -> None:
        self._config = config
        self._prices: dict[tuple[str, str], PriceConfig] = {}
        self._memo: dict[tuple[frozenset[str], str, str | None, str], _Ranking] = {}
        for table in (config.models, config.embedding_models):
            for model in table.values():
                if model.price is not None:
                    for route in model.routes:
                        self._prices.setdefault((route.provider, route.model), model.price)

    def price(self, name: str | None) -> PriceConfig | None:
        model = self._config.models.get(name or "") or self._config.embedding_models.get(name or "")
        return model.price if model is not None else None

    def route_price(self, provider: str, model: str) -> PriceConfig | None:
        """The price of one route (``provider::model``), from any catalog model that uses it."""
        return self._prices.get((provider, model))

    def available(self, model: ModelConfig) -> bool:
        """A model can serve when its first route's provider has the credentials it asks for."""
        provider = self._config.providers.get(model.routes[0].provider)
        return provider is not None and _has_credentials(provider)

    def embedding_models(self, vendor: str | None = None) -> list[str]:
        """Available embedding models (of ``vendor``, if named), cheapest first, unpriced last."""
        found = [
            (model.price.blended if model.price is not None else float("inf"), name)
            for name, model in self._config.embedding_models.items()
            if (not vendor or model.routes[0].provider == vendor) and self.available(model)
        ]
        return [name for _, name in sorted(found)]

    def media_models(self, capability: str, prefer: str = "balanced", vendor: str | None = None) -> list[str]:
        """Routable, available catalog models with ``capability`` (e.g. ``image``), ranked by ``prefer``."""
        if prefer not in ("balanced", "cheapest", "smartest"):
            raise InvalidRequestError("prefer must be balanced, cheapest or smartest", code="invalid_prefer")
        return [name for name, _, _ in self._ranked(frozenset({capability}), "general", vendor, prefer).ranked]

    def _ranked(self, needs: frozenset[str], task: str, vendor: str | None, prefer: str) -> _Ranking:
        """The priced, routable, available models with these capabilities, ranked (context not
        yet checked); remembered for a second per (needs, task, vendor, prefer), so routing
        costs a dict lookup and a provider key set in the environment is still picked up."""
        now = time.monotonic()
        key = (needs, task, vendor, prefer)
        hit = self._memo.get(key)
        if hit is not None and hit.expires > now:
            return hit
        found: Candidates = []
        for name, model in self._config.models.items():
            if not model.routable or model.price is None or not needs <= set(model.capabilities):
                continue
            if task != "general" and task not in model.tasks:
                continue
            if vendor and model.routes[0].provider != vendor:
                continue
            if not self.available(model):
                continue
            found.append((name, model, model.price))
        ranked = _rank(found, prefer) if found else []
        windows = [m.context_window for _, m, _ in found if m.context_window is not None]
        choice = _choice(ranked, prefer, task) if ranked else None
        if len(self._memo) > 1024:
            self._memo.clear()
        self._memo[key] = entry = _Ranking(now + 1.0, ranked, choice, min(windows) if windows else None)
        return entry

    def route(
        self,
        request: ChatRequest,
        *,
        task: str = "general",
        prefer: str = "balanced",
        vendor: str | None = None,
    ) -> Choice:
        """Rank the capable, available, priced models for this request."""
        if task not in TASKS:
            raise InvalidRequestError(f"task must be one of {', '.join(TASKS)}", code="invalid_task")
        if prefer not in ("balanced", "cheapest", "smartest"):
            raise InvalidRequestError("prefer must be balanced, cheapest or smartest", code="invalid_prefer")
        needs, context = scan(request)
        ranking = self._ranked(needs, task, vendor, prefer)
        choice = ranking.choice
        if ranking.min_window is not None and context > ranking.min_window:  # some are too small
            fitting = [c for c in ranking.ranked if c[1].context_window is None or context <= c[1].context_window]
            choice = _choice(_rank(fitting, prefer), prefer, task) if fitting else None
        if choice is None:
            raise InvalidRequestError(
                f"no available model can serve this request (needs {', '.join(sorted(needs))}, task={task}"
                f"{', vendor=' + vendor if vendor else ''}, ~{context} tokens); configure a provider key "
                "or name a model",
                code="no_model_available",
            )
        return choice


@dataclass(frozen=True, slots=True)
class _Ranking:
    expires: float
    ranked: Candidates
    choice: Choice | None
    min_window: int | None  # the smallest context window among them


def _choice(ranked: Candidates, prefer: str, task: str) -> Choice:
    name, model, price = ranked[0]
    reason = (
        f"prefer={prefer}, task={task}: {name} (quality {model.quality}, "
        f"${price.input:g}/${price.output:g} per 1M in/out) among {len(ranked)} capable model(s)"
    )
    return Choice([n for n, _, _ in ranked], reason)


def _rank(capable: Candidates, prefer: str) -> Candidates:
    if prefer == "cheapest":
        return sorted(capable, key=lambda c: (c[2].blended, -c[1].quality, c[0]))
    if prefer == "smartest":
        return sorted(capable, key=lambda c: (-c[1].quality, c[2].blended, c[0]))
    # balanced: the best quality among the cheaper half; ties go to the cheaper model.
    by_price = sorted(capable, key=lambda c: c[2].blended)
    median = by_price[(len(by_price) - 1) // 2][2].blended
    affordable = [c for c in capable if c[2].blended <= median]
    rest = [c for c in capable if c[2].blended > median]
    key = lambda c: (-c[1].quality, c[2].blended, c[0])  # noqa: E731
    return sorted(affordable, key=key) + sorted(rest, key=lambda c: (c[2].blended, c[0]))


_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
# every combination of (tools, json_schema, vision) as the frozenset routing keys its memo on
_NEEDS = {
    (tools, schema, vision): frozenset(
        name
        for name, wanted in (("chat", True), ("tools", tools), ("json_schema", schema), ("vision", vision))
        if wanted
    )
    for tools in (False, True)
    for schema in (False, True)
    for vision in (False, True)
}


def scan(request: ChatRequest) -> tuple[frozenset[str], int]:
    """(the capabilities the request needs, a cheap upper-ish size estimate in tokens: 4
    characters per token plus the output budget), in one pass over its messages."""
    chars = 0
    vision = False
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    chars += len(str(part.get("text", "")))
                    if part.get("type") in _IMAGE_PARTS:
                        vision = True
    needs = _NEEDS[(bool(request.tools), request.json_schema() is not None, vision)]
    return needs, chars // 4 + (request.output_limit or 0)


def required_capabilities(request: ChatRequest) -> set[str]:
    return set(scan(request)[0])


def _has_credentials(provider: ProviderConfig) -> bool:
    return provider.api_key_env is None or bool(os.environ.get(provider.api_key_env))
