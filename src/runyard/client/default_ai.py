"""``from runyard import ai``: Infrai's module-level namespace over the process-wide default client.

Configured from the environment like ``runyard.run``: ``RUNYARD_BASE_URL`` (+ ``RUNYARD_API_KEY``)
for a server, otherwise the embedded gateway (``RUNYARD_CONFIG`` names its config file)::

    from runyard import ai
    r = ai.chat("Hello", task="general", prefer="cheapest")
    ai.embed.create("text"); ai.image.generate("a fox"); ai.tts(input="Hi"); ai.realtime.token()
"""

from __future__ import annotations

from typing import Any

__all__ = ["DefaultAI", "ai"]


class DefaultAI:
    """Forwards every attribute to ``default_client().ai``, created on first use."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        from runyard.client.tasks import default_client

        return getattr(default_client().ai, name)

    def __repr__(self) -> str:
        return "<runyard.ai: client.ai of the default client>"


ai = DefaultAI()
