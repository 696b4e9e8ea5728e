"""Result types returned by the SDK.

Pydantic models that keep unknown fields (``extra="allow"``) so a newer server never breaks
an older client; they also answer ``result["content"]`` and ``result.get("usage")``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ChatChunk",
    "ChatResult",
    "Delta",
    "EmbedResult",
    "Embedding",
    "FeedbackResult",
    "FunctionCall",
    "FunctionCallDelta",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
]


class _Model(BaseModel):
    """Attribute and dict-style access; keys are the wire names (``_metadata``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def _attr(self, key: str) -> str | None:
        for name, field in type(self).model_fields.items():
            if key in (name, field.alias):
                return name
        if self.model_extra and key in self.model_extra:
            return key
        return None

    def __getitem__(self, key: str) -> Any:
        name = self._attr(key)
        if name is None:
            raise KeyError(key)
        return getattr(self, name)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._attr(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        name = self._attr(key)
        return default if name is None else getattr(self, name)

    def keys(self) -> list[str]:
        return list(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The JSON-shaped dict, with wire names."""
        return self.model_dump(mode="json", by_alias=True)


class Usage(_Model):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0

    @model_validator(mode="after")
    def _total(self) -> Usage:
        if not self.total_tokens:
            self.total_tokens = self.input_tokens + self.output_tokens
        return self


class FunctionCall(_Model):
    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> Any:
        """``arguments`` decoded from JSON."""
        return json.loads(self.arguments or "{}")


class ToolCall(_Model):
    id: str
    type: str = "function"
    function: FunctionCall


class ChatResult(_Model):
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    model: str | None = None
    provider: str | None = None
    inference_id: str | None = None
    episode_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, alias="_metadata")

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if v is not None or k in ("content", "finish_reason")}
        return data

    def __str__(self) -> str:
        return self.content or ""


class FunctionCallDelta(_Model):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_Model):
    index: int = 0
    id: str | None = None
    type: str | None = None
    function: FunctionCallDelta = Field(default_factory=FunctionCallDelta)


class Delta(_Model):
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChatChunk(_Model):
    delta: Delta = Field(default_factory=Delta)
    finish_reason: str | None = None
    index: int = 0
    usage: Usage | None = None
    inference_id: str | None = None
    episode_id: str | None = None
    model: str | None = None
    provider: str | None = None
    metadata: dict[str, Any] | None = Field(default=None, alias="_metadata")  # on the last chunk

    @property
    def content(self) -> str | None:
        """``delta.content``."""
        return self.delta.content

    @property
    def text(self) -> str:
        """``delta.content`` or ``""``."""
        return self.delta.content or ""


class Embedding(_Model):
    index: int
    embedding: list[float]


class EmbedResult(_Model):
    embeddings: list[list[float]] = Field(default_factory=list)
    data: list[Embedding] = Field(default_factory=list)
    model: str | None = None
    provider: str | None = None
    usage: Usage = Field(default_factory=Usage)
    inference_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, alias="_metadata")

    @model_validator(mode="after")
    def _fill(self) -> EmbedResult:
        if not self.embeddings and self.data:
            self.embeddings = [d.embedding for d in sorted(self.data, key=lambda d: d.index)]
        elif self.embeddings and not self.data:
            self.data = [Embedding(index=i, embedding=e) for i, e in enumerate(self.embeddings)]
        return self

    @property
    def embedding(self) -> list[float]:
        """The first (or only) vector."""
        return self.embeddings[0]

    def __getitem__(self, key: str) -> Any:
        # Dict-style access reads the wire shape: result["data"][0]["embedding"], as OpenAI-style code does.
        return [d.to_dict() for d in self.data] if key == "data" else super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self["data"] if key == "data" else super().get(key, default)


class FeedbackResult(_Model):
    feedback_id: str
