"""``/openapi.json`` and the offline ``/docs`` page (Swagger UI, vendored: no CDN)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .registry import Operation

__all__ = ["DOC_PATHS", "doc_routes", "operations"]

_ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8"}
DOC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/init.js", *(f"/docs/{name}" for name in _ASSETS)})
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Runyard API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="ui"></div><script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
_INIT = b'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui", deepLinking: true});\n'
# The page runs only its own scripts; nothing is fetched from elsewhere.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


@functools.cache
def _asset(name: str) -> bytes:
    """Read on the first request for it: 1.9 MB each gateway process and embedded client would
    otherwise hold from its start, for a page most of them never serve."""
    return (resources.files(__package__) / "static" / "swagger-ui" / name).read_bytes()


def doc_routes(spec: dict[str, Any]) -> list[Route]:
    """The routes serving ``spec`` (built once) and the docs page over it."""
    body = orjson.dumps(spec)
    cache = "public, max-age=3600"

    async def openapi_json(_request: Request) -> Response:
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})

    async def docs_page(_request: Request) -> Response:
        return HTMLResponse(_PAGE, headers=_PAGE_HEADERS)

    async def init_js(_request: Request) -> Response:
        return Response(_INIT, media_type="text/javascript", headers=_PAGE_HEADERS)

    def asset_route(name: str, media_type: str) -> Route:
        async def serve(_request: Request) -> Response:
            return Response(_asset(name), media_type=media_type, headers={**_PAGE_HEADERS, "Cache-Control": cache})

        return Route(f"/docs/{name}", serve, methods=["GET"])

    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
        Route("/docs/init.js", init_js, methods=["GET"]),
        *(asset_route(name, media) for name, media in _ASSETS.items()),
    ]


_TEXT: dict[str, Any] = {"type": "string"}
operations = [
    Operation(
        "GET",
        "/openapi.json",
        "This API description (OpenAPI 3.1)",
        "meta",
        "getOpenapi",
        response={"type": "object"},
        security="none",
    ),
    Operation(
        "GET",
        "/docs",
        "The API reference page (offline Swagger UI)",
        "meta",
        "getDocs",
        response=_TEXT,
        response_media="text/html",
        security="none",
    ),
    Operation(
        "GET",
        "/docs/init.js",
        "The docs page's script",
        "meta",
        "getDocsInit",
        response=_TEXT,
        response_media="text/javascript",
        security="none",
    ),
    *(
        Operation(
            "GET",
            f"/docs/{name}",
            f"Swagger UI asset {name}",
            "meta",
            f"getDocsAsset{i}",
            response=_TEXT,
            response_media=media.split(";")[0],
            security="none",
        )
        for i, (name, media) in enumerate(_ASSETS.items())
    ),
]
