"""The tests' in-loop aiohttp upstream: a real aiohttp server on 127.0.0.1 (a free port) in the
test's own event loop. A subclass adds its routes in :meth:`AiohttpLoopback.routes`, or a ready
``web.Application`` is served as is. (For a server in a thread of its own: :mod:`support.loopback`.)"""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

from aiohttp import web

__all__ = ["AiohttpLoopback"]

_A = TypeVar("_A", bound="AiohttpLoopback")


class AiohttpLoopback:
    """``await start()`` / ``await stop()``, or ``async with``; ``url`` is its base URL once started."""

    def __init__(self, app: web.Application | None = None) -> None:
        self.url = ""
        self._app = app
        self._runner: web.AppRunner | None = None

    def routes(self, router: web.UrlDispatcher) -> None:
        """Add the server's routes (a subclass); not called when an app was given."""
        raise NotImplementedError

    async def start(self: _A) -> _A:
        app = self._app
        if app is None:
            app = web.Application()
            self.routes(app.router)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self: _A) -> _A:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
