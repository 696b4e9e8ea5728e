"""Runyard Python SDK.

``AsyncClient`` / ``Client`` talk to a Runyard server over HTTP, or run the gateway
in-process with ``.embedded()``. Errors are the classes of :mod:`runyard.errors`.
"""

from runyard.client._base import AsyncAPIClient
from runyard.client._client import EMBEDDED_BASE_URL, AsyncClient, Client
from runyard.client._streaming import AsyncStream, ServerSentEvent, Stream
from runyard.client._sync import Portal
from runyard.client._transports import ASGITransport, RetryTransport
from runyard.client.files import AsyncFiles, FileOutput, Files, UploadedFile, prepare_inputs, wrap_outputs
from runyard.client.limits import RateLimitInfo, UsageLimits, UsageReport
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
    "AsyncFiles",
    "AsyncStream",
    "ChatChunk",
    "ChatResult",
    "Client",
    "Delta",
    "EmbedResult",
    "FeedbackResult",
    "FileOutput",
    "Files",
    "Portal",
    "RateLimitInfo",
    "RetryTransport",
    "ServerSentEvent",
    "Stream",
    "ToolCall",
    "UploadedFile",
    "Usage",
    "UsageLimits",
    "UsageReport",
    "prepare_inputs",
    "wrap_outputs",
]
