"""The ``web_search`` tool's provider: a SearXNG instance's JSON search API (``[agents.web_search]``)."""

from __future__ import annotations

from typing import Any

from ..agent_settings import WebSearchConfig
from ..services.urlguard import guarded_session

__all__ = ["SearxngSearch"]


class SearxngSearch:
    """``GET {url}/search?q=...&format=json``, cut down to title, url and snippet per result."""

    def __init__(self, config: WebSearchConfig, *, allow_private: bool = False) -> None:
        self.config = config
        self.allow_private = allow_private

    async def search(self, query: str) -> dict[str, Any]:
        if not query.strip():
            return {"error": "invalid_arguments", "message": "'query' must be a non-empty string"}
        url = self.config.url.rstrip("/") + "/search"
        async with guarded_session(allow_private=self.allow_private, timeout_s=self.config.timeout_s) as http:
            async with http.get(url, params={"q": query, "format": "json"}) as resp:
                if resp.status >= 400:
                    text = await resp.text()
                    return {"error": "web_search_failed", "status": resp.status, "message": text[:500]}
                body = await resp.json(content_type=None)
        results = body.get("results") if isinstance(body, dict) else None
        return {
            "query": query,
            "results": [
                {"title": r.get("title"), "url": r.get("url"), "snippet": r.get("content")}
                for r in (results or [])[: self.config.max_results]
                if isinstance(r, dict)
            ],
        }
