"""Deprecated: the old name of :mod:`runyard.inference`, for the four modules that still import it
(services/agents.py, services/apps.py, services/cache.py, services/workflows.py).

Import from :mod:`runyard.inference`; this module (and its ``ChatResult`` alias, which shares the
SDK's name) goes once nothing imports it.
"""

from __future__ import annotations

from .inference import ChatOutcome, ChatRequest, ImageRequest, Message

ChatResult = ChatOutcome

__all__ = ["ChatRequest", "ChatResult", "ImageRequest", "Message"]
