"""The ASGI app factory: routes of every protocol over one :class:`Gateway`."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..backends.redis_conn import connect as connect_redis
from ..config import RunyardConfig
from ..errors import InternalServerError, RunyardError, ServiceUnavailableError, error_for_status
from ..gateway import Gateway
from ..telemetry.http import UNMATCHED, HttpTelemetry
from ..telemetry.logs import secrets_of
from ..telemetry.service import Telemetry
from . import openai_surface
from .console import PREFIX as CONSOLE_PREFIX
from .console import create_console
from .guard import Guard, GuardMiddleware
from .http import error_response
from .inferencesh_runs import InferenceshRuns
from .openapi import Operation, build_spec, doc_routes
from .openapi.docs import operations as doc_operations
from .readiness import operations as readiness_operations
from .readiness import readyz_endpoint
from .routes import (
    agents,
    audit,
    files,
    inferencesh,
    inferencesh_api,
    media,
    metrics,
    native,
    openai,
    sim_execute,
    simstudio,
    speedpix,
    tasks,
    tensorzero,
    usage,
)
from .routes import inferences as inference_routes
from .routes import keys as key_routes
from .routes import workflows as workflow_routes

# Every route module's API declarations (server/openapi): a route without one fails tests/test_openapi.py.
OPERATIONS: list[Operation] = [
    *doc_operations,
    *native.operations,
    *openai.operations,
    *openai_surface.operations,
    *tensorzero.operations,
    *files.operations,
    *tasks.operations,
    *media.operations,
    *usage.operations,
    *inference_routes.operations,
    *key_routes.operations,
    *workflow_routes.operations,
    *simstudio.operations,
    *sim_execute.operations,
    *speedpix.operations,
    *agents.operations,
    *inferencesh_api.operations,
    *audit.operations,
    *metrics.operations,
    *readiness_operations,
]


def api_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared route (served at ``/openapi.json``)."""
    from .. import __version__

    return build_spec(OPERATIONS, version=__version__)


log = logging.getLogger("runyard.server")


def create_app(
    config: RunyardConfig,
    *,
    worker: bool = True,
    span_exporter: Any = None,
    on_started: Callable[[Gateway], None] | None = None,
) -> Starlette:
    """``worker=False``: serve the API only; tasks wait for ``runyard worker`` processes.
    ``span_exporter``: where spans go instead of ``[telemetry] otlp_endpoint`` (tests);
    ``on_started``: called once the gateway has started (the CLI's banner)."""
    telemetry = build_telemetry(config, span_exporter)
    gateway = Gateway(config, run_worker=worker, telemetry=telemetry.inference)
    inferencesh_runs = InferenceshRuns()
    redis = connect_redis(config.redis) if config.redis is not None else None  # for /readyz

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await telemetry.start(task_metrics=task_metrics(gateway), sample=metrics.sample_gateway(gateway))
        await gateway.start()
        if on_started is not None:
            on_started(gateway)
        try:
            yield
        finally:
            await inferencesh_runs.aclose()
            try:
                await gateway.aclose()
            finally:
                try:
                    await telemetry.aclose()
                finally:
                    if redis is not None:
                        await redis.aclose()

    guard = Guard.for_gateway(
        gateway,
        signed={"/scc/": speedpix.authenticate, metrics.PATH: metrics.authenticate},
        dialects={"/api/": simstudio.refusal},
    )
    app = RunyardApp(
        hot_routes=[*openai.hot_routes, *native.hot_routes],
        guard=guard,
        telemetry=telemetry,
        routes=[
            *metrics.routes,
            *native.routes,
            *openai.routes,
            *tensorzero.routes,
            *openai_surface.routes,  # before the native /v1/files routes
            *files.routes,
            *tasks.routes,
            *media.routes,
            *usage.routes,
            *inference_routes.routes,
            *key_routes.routes,
            *workflow_routes.routes,
            *simstudio.routes,
            *sim_execute.routes,
            *speedpix.routes,
            *agents.routes,
            *inferencesh.routes(inferencesh_runs),
            Route("/readyz", readyz_endpoint(gateway.store, redis), methods=["GET"]),
            *audit.routes,
            *doc_routes(api_spec()),
        ],
        lifespan=lifespan,
        exception_handlers={
            RunyardError: _runyard_error,
            HTTPException: _http_error,
        },
    )
    app.state.gateway = gateway
    app.state.telemetry = telemetry
    app.console = create_console(gateway)
    openai_surface.install(app, gateway)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(GuardMiddleware, guard=guard)
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

    def __init__(self, *, hot_routes: list[Route], guard: Guard, telemetry: Telemetry, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot = {(method, r.path): r.endpoint for r in hot_routes for method in r.methods or ()}
        self.guard = guard
        self.telemetry = HttpTelemetry(telemetry.metrics, telemetry.access_log, self._route_of)
        self.console: ASGIApp | None = None  # the web console: /ui, its own cookie sign-in (server/console)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # request id, metrics, access log, server span: telemetry/http.py
        handler = self.hot.get((scope["method"], scope["path"]))
        if handler is None:
            await self.telemetry.serve(scope, receive, send, self._serve)
            return
        exchange = self.telemetry.begin(scope)
        try:
            response = await self._answer(scope, receive, handler)
            if response is None:
                return  # the caller left while sending its request: nobody to answer
            response.raw_headers.append(exchange.id_header)
            exchange.status = status = response.status_code
            if status == 429 or status == 402:
                self.telemetry.refused(getattr(response, "body", b""))
            try:
                await response(scope, receive, send)
            except Exception:  # the answer had started (streams handle their own errors): log only
                log.exception("error while sending the answer to %s %s", scope["method"], scope["path"])
        finally:
            state = scope.get("state")
            if state and "limit_policy" in state:
                self.guard.done(state)  # the request ended: its spend reservation goes back
            self.telemetry.end(exchange, scope, scope["path"])

    def _route_of(self, scope: Scope) -> str:
        """The route template a request matched (a metric label: never the raw path)."""
        route = scope.get("route")
        return str(getattr(route, "path", UNMATCHED)) if route is not None else UNMATCHED

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every route but the hot ones: the console, else Starlette's router."""
        path = scope.get("path", "")
        if self.console is not None and (path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")):
            await self.console(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, handler: Any) -> Response | None:
        """A hot route's response: the guard's refusal, the handler's answer or the error's."""
        scope["app"] = self
        try:
            response = await self.guard.admit(scope, defer=True)
            if response is None:
                response = await handler(Request(scope, receive))
        except RunyardError as err:
            response = error_response(err)
        except ClientDisconnect:
            return None
        except Exception as exc:
            response = error_response(unexpected_error(exc, scope))
        try:
            response = await self.guard.settle(scope) or response  # a deferred admission, not yet taken
        except Exception as exc:
            response = error_response(unexpected_error(exc, scope))
        extra = scope["state"].get("rate_limit")
        if extra:
            response.raw_headers.extend(extra)
        return response


def unexpected_error(exc: Exception, scope: Scope) -> RunyardError:
    """What to answer for an exception no handler turned into a RunyardError: the store being out
    of reach (connections refused or exhausted, a pool timeout) is a 503 ``store_unavailable`` the
    caller may retry; anything else is a bug, logged, and a 500."""
    if isinstance(exc, OperationalError | InterfaceError | SQLAlchemyTimeoutError):
        log.warning("store unavailable on %s %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__)
        return ServiceUnavailableError("the store is unavailable; retry shortly", code="store_unavailable")
    if _redis_unreachable(exc):
        log.warning("Redis unavailable on %s %s: %s", scope.get("method"), scope.get("path"), exc)
        return ServiceUnavailableError("shared state (Redis) is unavailable; retry shortly", code="redis_unavailable")
    log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
    return InternalServerError("internal error; see the server log", code="internal_error")


def _redis_unreachable(exc: Exception) -> bool:
    """Redis refused, dropped or did not answer (only when a ``[redis]`` backend loaded redis-py)."""
    errors = sys.modules.get("redis.exceptions")
    return errors is not None and isinstance(exc, errors.ConnectionError | errors.TimeoutError)


async def _runyard_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RunyardError)
    return error_response(exc)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "route_not_found", 405: "method_not_allowed"}
    err = error_for_status(exc.status_code, codes.get(exc.status_code), str(exc.detail))
    return error_response(err)


def build_telemetry(config: RunyardConfig, span_exporter: Any = None) -> Telemetry:
    """``[telemetry]``: the configured models as label values, secrets redacted from spans."""
    return Telemetry(
        config.telemetry,
        known_models=[*config.models, *config.embedding_models],
        span_exporter=span_exporter,
        redact=secrets_of(config),
    )


def task_metrics(gateway: Gateway) -> Any:
    """The task figures read from the gateway's store (None when metrics are off)."""
    if not gateway.config.telemetry.metrics:
        return None
    from ..telemetry.task_metrics import TaskMetrics

    return TaskMetrics(gateway.store, list(gateway.tasks.pools()))


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
        except Exception as exc:
            err = unexpected_error(exc, scope)
            if started or scope["type"] != "http":
                return
            await error_response(err)(scope, receive, send)
