"""``[agents]`` settings: the web search provider, the default image model, template aliases."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AgentsConfig", "WebSearchConfig"]


class WebSearchConfig(BaseModel):
    """``[agents.web_search]``: the search API behind agents' ``web_search`` tool."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["searxng"] = "searxng"
    url: str = Field(description="the instance's base URL (its /search answers format=json)")
    max_results: int = Field(default=5, ge=1, le=50)
    timeout_s: float = Field(default=10.0, gt=0, le=120)


class AgentsConfig(BaseModel):
    """``[agents]``: server-side agent settings."""

    model_config = ConfigDict(extra="forbid")

    web_search: WebSearchConfig | None = Field(default=None, description="absent: web_search is not offered")
    image_model: str | None = Field(default=None, description="image_generation's model when a config names none")
    aliases: dict[str, dict[str, int]] = Field(
        default_factory=dict, description='{"org/name": {"stable": 2}}: org/name@stable is version 2'
    )
