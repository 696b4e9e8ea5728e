"""Runyard Python SDK.

``AsyncClient`` / ``Client`` talk to a Runyard server over HTTP, or run the gateway
in-process with ``.embedded()``. Errors are the classes of :mod:`runyard.errors`.
"""

from runyard.client._base import AsyncAPIClient
from runyard.client._client import EMBEDDED_BASE_URL, AsyncClient, Client
from runyard.client._streaming import AsyncStream, ServerSentEvent, Stream
from runyard.client._sync import Portal
from runyard.client._transports import ASGITransport, RetryTransport
from runyard.client.types import (
    ChatChunk,
    ChatResult,
    Delta,
    EmbedResult,
    FeedbackResult,
    ToolCall,
    Usage,
)

__all__ = [
    "EMBEDDED_BASE_URL",
    "ASGITransport",
    "AsyncAPIClient",
    "AsyncClient",
    "AsyncStream",
    "ChatChunk",
    "ChatResult",
    "Client",
    "Delta",
    "EmbedResult",
    "FeedbackResult",
    "Portal",
    "RetryTransport",
    "ServerSentEvent",
    "Stream",
    "ToolCall",
    "Usage",
]
