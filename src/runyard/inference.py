"""The gateway's inference records: the requests it validates and the outcomes its providers return.

Shared by the server, the services and the providers (never the SDK, whose answers are
:mod:`runyard.client.types`: hence the ``*Outcome`` names, apart from the SDK's ``*Result``).
Requests are pydantic models (validated straight from JSON bytes); outcomes are slotted
dataclasses, cheap to build on the hot path. Message and tool shapes follow the OpenAI chat
format, the lingua franca every provider module translates from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "developer", "user", "assistant", "tool"]


class FunctionCallIn(BaseModel):
    name: str
    arguments: str = "{}"


class ToolCallIn(BaseModel):
    """A tool call echoed back in an assistant message."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCallIn


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDef


class ChatRequest(BaseModel):
    """A chat completion request. Unknown OpenAI parameters are kept and passed through."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    user: str | None = None

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema asked for by ``response_format``, if any."""
        rf = self.response_format or {}
        if rf.get("type") == "json_schema":
            spec = rf.get("json_schema") or {}
            schema = spec.get("schema")
            return schema if isinstance(schema, dict) else {}
        return None


MAX_EMBED_DIMENSIONS = 16_384  # past any embedding model's size: a bigger ask is a 400, not a huge allocation


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str | list[str] = Field(min_length=1)
    dimensions: int | None = Field(default=None, ge=1, le=MAX_EMBED_DIMENSIONS)
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


@dataclass(slots=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: TokenUsage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class ModelToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text, as the model produced it

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(slots=True)
class Attempt:
    """One try of one route, kept on the result for transparency."""

    provider: str
    model: str
    error: str | None = None
    code: str | None = None


@dataclass(slots=True, kw_only=True)
class Outcome:
    """What every outcome carries besides its payload: the tokens (or characters) it used, the
    model asked for, the provider and provider model that served it, its id and latency."""

    usage: TokenUsage = field(default_factory=TokenUsage)
    model: str = ""  # the model the caller asked for
    provider: str = ""  # the provider that served it
    provider_model: str = ""  # the provider's own model name
    inference_id: str = ""
    latency_ms: float = 0.0


@dataclass(slots=True)
class ChatOutcome(Outcome):
    content: str | None
    tool_calls: list[ModelToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    episode_id: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    cost: float | None = None  # USD from the catalog's prices; None when the model has no price
    cache_hit: bool = False
    route_reason: str | None = None
    batch_id: str | None = None  # the provider's batch that answered it (``batch_mode``); None: a live call

    def text_size(self) -> int:
        """The characters the answer holds (its text and tool calls' arguments): what a cached
        answer or a buffered inference row weighs beyond its fixed overhead."""
        return len(self.content or "") + sum(len(call.arguments) for call in self.tool_calls)


@dataclass(slots=True)
class ModelToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class ChatDelta:
    """One streamed piece of a chat answer."""

    content: str | None = None
    tool_calls: list[ModelToolCallDelta] | None = None
    finish_reason: str | None = None
    usage: TokenUsage | None = None

    def to_openai(self) -> dict[str, Any]:
        """The ``delta`` object of an OpenAI chat.completion.chunk."""
        out: dict[str, Any] = {}
        if self.content is not None:
            out["content"] = self.content
        if self.tool_calls:
            calls = []
            for tc in self.tool_calls:
                fn: dict[str, Any] = {"arguments": tc.arguments}
                call: dict[str, Any] = {"index": tc.index, "function": fn}
                if tc.id:
                    call["id"] = tc.id
                    call["type"] = "function"
                if tc.name:
                    fn["name"] = tc.name
                calls.append(call)
            out["tool_calls"] = calls
        return out


@dataclass(slots=True)
class EmbedOutcome(Outcome):
    embeddings: list[list[float]]
    attempts: list[Attempt] = field(default_factory=list)
    cost: float | None = None


# -- audio and images ---------------------------------------------------------------

AUDIO_MEDIA_TYPES = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
}


class SpeechRequest(BaseModel):
    """Text to speech (OpenAI ``/v1/audio/speech`` shape). ``response_format``: wav, pcm (16-bit
    mono little-endian), or what an upstream supports (mp3, opus, aac, flac)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str = Field(min_length=1, max_length=100_000)
    voice: str | None = None
    response_format: str | None = None
    speed: float | None = Field(default=None, ge=0.25, le=4.0)
    stream: bool | None = None

    @property
    def audio_format(self) -> str:
        return (self.response_format or "wav").lower()


@dataclass(slots=True)
class SpeechOutcome(Outcome):
    """Synthesised audio (``usage.input_tokens``: the characters read)."""

    audio: bytes
    media_type: str = "audio/wav"
    sample_rate: int = 0
    duration_s: float = 0.0


@dataclass(slots=True)
class TranscribeRequest:
    """Speech to text: the audio file and the OpenAI transcription options."""

    audio: bytes
    filename: str = "audio.wav"
    content_type: str = "application/octet-stream"
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None


@dataclass(slots=True)
class TranscribeOutcome(Outcome):
    text: str
    language: str | None = None
    duration_s: float | None = None
    segments: list[dict[str, Any]] | None = None  # [{id, start, end, text}] when the upstream gives them


@dataclass(slots=True)
class RealtimeSession:
    """A short-lived credential for a realtime (speech-to-speech) session at a provider."""

    session_id: str
    token: str
    expires_at: int  # unix seconds
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    provider: str = ""
    provider_model: str = ""
    voice: str | None = None


class ImageRequest(BaseModel):
    """Image generation (OpenAI ``/v1/images/generations`` shape)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: str = Field(min_length=1, max_length=32_000)
    n: int | None = Field(default=None, ge=1, le=10)
    size: str | None = None
    quality: str | None = None
    response_format: Literal["url", "b64_json"] | None = None


@dataclass(slots=True)
class ImageOutcome(Outcome):
    images: list[dict[str, Any]]  # each {"b64_json": ...} or {"url": ...}, maybe "revised_prompt"
