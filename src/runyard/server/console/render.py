"""Page rendering: the Jinja2 environment (autoescaped), its filters and the console's headers.

Every page answers with a strict Content-Security-Policy (scripts only from ``/ui/static``,
no inline script), so even a markup bug cannot run a stored ``<script>``; user content is
escaped by Jinja2's autoescape and chart data travels as ``tojson`` data blocks.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ...errors import RunyardError
from ...files import parse_file_ref

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def pretty(value: Any) -> str:
    """JSON, indented (escaped by the template like any text); a string holding a JSON object or
    array (tool-call arguments) is shown as that JSON."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()
    except TypeError:
        return repr(value)


def when(value: Any) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def money(value: Any) -> str:
    if value is None:
        return "–"
    return f"${value:,.6f}" if value < 0.01 else f"${value:,.4f}"


def ms(value: Any) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def file_id(value: Any) -> str | None:
    """The file id of a ``runyard://files/<id>`` reference, else None."""
    return parse_file_ref(value) if isinstance(value, str) else None


def file_refs(value: Any, found: list[str] | None = None) -> list[str]:
    """Every file id referenced in a JSON value, in order, once each."""
    found = [] if found is None else found
    if isinstance(value, str):
        ref = file_id(value)
        if ref is not None and ref not in found:
            found.append(ref)
    elif isinstance(value, dict):
        for item in value.values():
            file_refs(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            file_refs(item, found)
    return found


def make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pretty=pretty, when=when, money=money, ms=ms)
    env.globals.update(file_refs=file_refs)
    return env


class Pages:
    """Renders templates with the context every page needs (signed-in key, CSRF token, nav)."""

    def __init__(self) -> None:
        self.env = make_env()

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        state = request.scope.get("state") or {}
        base = {
            "request": request,
            "me": state.get("api_key"),
            "admin": state.get("console_admin", False),
            "open_mode": state.get("console_open", False),
            "csrf": state.get("console_csrf", ""),
            "path": request.url.path,
        }
        html = self.env.get_template(template).render(**base, **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """:meth:`Pages.render` with the console's pages (``app.state.pages``)."""
    pages: Pages = request.app.state.pages
    return pages.render(request, template, status, **context)


def error_page(request: Request, err: RunyardError) -> HTMLResponse:
    """The error page for a request the page could not serve (its status, else 400)."""
    return render(request, "error.html", status=err.status or 400, error=err)
