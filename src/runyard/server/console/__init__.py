"""The web console at ``/ui``: server-rendered pages over the same services and access rules
as the API (see README, "Console"). :func:`create_console` builds it for one gateway; the
API app hands it every ``/ui`` request before its bearer-key middleware (server/app.py)."""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ...errors import InternalServerError, RunyardError, error_for_status
from ...gateway import Gateway
from . import pages_data, pages_flows, pages_keys, pages_tasks
from .gate import ConsoleGate, form_handler, signin, signin_page, signout
from .render import Pages
from .session import SessionStore

PREFIX = "/ui"
STATIC = Path(__file__).parent / "static"
log = logging.getLogger("runyard.console")


def create_console(gateway: Gateway) -> ConsoleGate:
    """The console's ASGI app (paths keep their ``/ui`` prefix)."""
    pages = Pages()
    sessions = SessionStore()
    routes: list[Route | Mount] = [
        Route(PREFIX, lambda _r: RedirectResponse(PREFIX + "/", status_code=307), methods=["GET"]),
        Route(PREFIX + "/signin", signin_page, methods=["GET"]),
        Route(PREFIX + "/signin", form_handler(signin), methods=["POST"]),
        Route(PREFIX + "/signout", form_handler(signout), methods=["POST"]),
        Mount(PREFIX + "/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    for module in (pages_data, pages_tasks, pages_flows, pages_keys):
        for path, endpoint, methods in module.routes_spec:
            routes.append(Route(PREFIX + path, endpoint, methods=methods))

    async def runyard_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RunyardError)
        return pages.render(request, "error.html", status=exc.status or 500, error=exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        codes = {404: "page_not_found", 405: "method_not_allowed"}
        err = error_for_status(exc.status_code, codes.get(exc.status_code), str(exc.detail))
        return pages.render(request, "error.html", status=exc.status_code, error=err)

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("console error on %s %s", request.method, request.url.path, exc_info=exc)
        err = InternalServerError("internal error; see the server log", code="internal_error")
        return pages.render(request, "error.html", status=500, error=err)

    app = Starlette(
        routes=routes,
        exception_handlers={RunyardError: runyard_error, HTTPException: http_error, Exception: crash},
    )
    app.state.gateway = gateway
    app.state.pages = pages
    app.state.sessions = sessions
    return ConsoleGate(app, gateway, sessions, pages)


__all__ = ["PREFIX", "create_console"]
