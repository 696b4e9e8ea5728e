"""The ASGI app factory: routes of every protocol over one :class:`Gateway`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import RunyardConfig
from ..errors import InternalServerError, RunyardError, error_for_status
from ..gateway import Gateway
from .http import error_response
from .ratelimit import PUBLIC_PATHS, AuthLimitMiddleware, Guard  # noqa: F401 - PUBLIC_PATHS re-exported
from .routes import agents, files, inferencesh, media, native, openai, simstudio, speedpix, tasks, tensorzero, usage
from .routes import inferences as inference_routes
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

    guard = Guard(gateway, signed={"/scc/": speedpix.authenticate})
    app = RunyardApp(
        hot_routes=[*openai.hot_routes, *native.hot_routes],
        guard=guard,
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
            *inference_routes.routes,
        ],
        lifespan=lifespan,
        exception_handlers={
            RunyardError: _runyard_error,
            HTTPException: _http_error,
        },
    )
    app.state.gateway = gateway
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(AuthLimitMiddleware, guard=guard)
    return app


class RunyardApp(Starlette):
    """Starlette, with the hot inference routes served first, by a dict lookup.

    The same handlers Starlette's router would call, minus its per-request layers (error
    middleware, linear route matching, exception wrappers, a task group) and the three ``send``
    wrappers of the middleware below: together most of the framework's share of the gateway's
    CPU (bench/README.md). The :class:`Guard` authenticates and admits them as the middleware
    does for every other route; errors are rendered as the app's handlers render them, and a
    bug is logged and answered as a JSON 500 (as :class:`CatchAllMiddleware` does).
    """

    def __init__(self, *, hot_routes: list[Route], guard: Guard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot = {(method, r.path): r.endpoint for r in hot_routes for method in r.methods or ()}
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.hot.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if handler is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        try:
            response = await self.guard.admit(scope)
            if response is None:
                response = await handler(Request(scope, receive))
        except RunyardError as err:
            response = error_response(err)
        except ClientDisconnect:
            return  # the caller left while sending its request: nobody to answer
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            response = error_response(InternalServerError("internal error; see the server log", code="internal_error"))
        extra = scope["state"].get("rate_limit")
        if extra:
            response.raw_headers.extend(extra)
        try:
            await response(scope, receive, send)
        except Exception:  # the answer had started (streams handle their own errors): log only
            log.exception("error while sending the answer to %s %s", scope["method"], scope["path"])


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
