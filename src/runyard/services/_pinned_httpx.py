"""httpx pieces of the URL guard (services/urlguard.py): a network backend that connects to the
checked address, in a transport otherwise like ``httpx.AsyncHTTPTransport``."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from .urlguard import Resolver, resolve_checked


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """``connect_tcp(host)``: resolve once, check every address, connect to a checked one."""

    def __init__(self, *, allow_private: bool, resolver: Resolver | None) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private
        self._resolver = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_checked(host, port, allow_private=self._allow_private, resolver=self._resolver)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                error = err
        assert error is not None
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable through the URL guard")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` over :class:`PinnedBackend` (no proxy: it would resolve itself).
    TLS verifies the URL's host name as usual (``SSL_CERT_FILE`` honoured)."""

    def __init__(self, *, allow_private: bool, resolver: Resolver | None) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(),
            network_backend=PinnedBackend(allow_private=allow_private, resolver=resolver),
        )
