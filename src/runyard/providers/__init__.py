"""Provider modules, one per upstream kind, behind :class:`Provider`."""

from __future__ import annotations

import importlib

from ..config import ConfigError, ProviderConfig
from .base import Provider, can_fall_back

# kind -> "module:Class"; modules are imported only when a provider of that kind is used.
PROVIDER_KINDS: dict[str, str] = {
    "openai": "runyard.providers.openai:OpenAIProvider",
    "anthropic": "runyard.providers.anthropic:AnthropicProvider",
    "dummy": "runyard.providers.dummy:DummyProvider",
    # Local models (the `local` extra): imported only when used, runtimes only when a model loads.
    "local": "runyard.providers.local:LocalProvider",
    "llamacpp": "runyard.providers.llamacpp:LlamaCppProvider",
    "st_embeddings": "runyard.providers.st_embeddings:SentenceTransformersProvider",
    "sentence_transformers": "runyard.providers.st_embeddings:SentenceTransformersProvider",
    "piper": "runyard.providers.piper:PiperProvider",
}


def build_provider(name: str, config: ProviderConfig) -> Provider:
    target = PROVIDER_KINDS.get(config.kind)
    if target is None:
        raise ConfigError(
            f"providers.{name}.kind: unknown provider kind {config.kind!r} (known: {', '.join(sorted(PROVIDER_KINDS))})"
        )
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    provider: Provider = cls(name, config)
    return provider


__all__ = ["PROVIDER_KINDS", "Provider", "build_provider", "can_fall_back"]
