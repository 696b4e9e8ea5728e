"""The ASGI app factory: routes of every protocol over one :class:`Gateway`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import RunyardConfig
from ..errors import InternalServerError, RunyardError, error_for_status
from ..gateway import Gateway
from .http import error_response
from .ratelimit import PUBLIC_PATHS, AuthLimitMiddleware  # noqa: F401 - PUBLIC_PATHS re-exported
from .routes import agents, files, inferencesh, media, native, openai, simstudio, speedpix, tasks, tensorzero, usage
from .routes import workflows as workflow_routes

log = logging.getLogger("runyard.server")


def create_app(config: RunyardConfig, *, worker: bool = True) -> Starlette:
    """``worker=False``: serve the API only; tasks wait for ``runyard worker`` processes."""
    gateway = Gateway(config, run_worker=worker)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.aclose()

    app = Starlette(
        routes=[
            *native.routes,
            *openai.routes,
            *tensorzero.routes,
            *files.routes,
            *tasks.routes,
            *media.routes,
            *usage.routes,
            *workflow_routes.routes,
            *simstudio.routes,
            *speedpix.routes,
            *agents.routes,
            *inferencesh.routes,
        ],
        lifespan=lifespan,
        exception_handlers={
            RunyardError: _runyard_error,
            HTTPException: _http_error,
        },
    )
    app.state.gateway = gateway
    app.add_middleware(HotRoutes, routes=[*openai.hot_routes, *native.hot_routes])
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(AuthMiddleware, gateway=gateway, signed={"/scc/": speedpix.authenticate})
    return app


class HotRoutes:
    """Dispatches the hot inference routes by a dict lookup, straight to their handlers.

    The same handler functions Starlette's router would call, minus its per-request layers
    (linear route matching, two exception wrappers, a task group): they were ~60 µs of CPU per
    request, a sixth of the gateway's cost (bench/README.md). Auth, limits and the error
    catch-all still wrap these routes; errors are rendered exactly as the app's handlers do.
    """

    def __init__(self, app: ASGIApp, routes: list[Route]) -> None:
        self.app = app
        self.handlers = {(method, r.path): r.endpoint for r in routes for method in r.methods or ()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except RunyardError as err:
            response = error_response(err)
        await response(scope, receive, send)


AuthMiddleware = AuthLimitMiddleware  # authentication, then per-key limits (see .ratelimit)


async def _runyard_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RunyardError)
    return error_response(exc)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "route_not_found", 405: "method_not_allowed"}
    err = error_for_status(exc.status_code, codes.get(exc.status_code), str(exc.detail))
    return error_response(err)


class CatchAllMiddleware:
    """A bug never escapes as a bare 500 page: it is logged and answered as a JSON error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started or scope["type"] != "http":
                return
            err = InternalServerError("internal error; see the server log", code="internal_error")
            await error_response(err)(scope, receive, send)
