"""The upstream HTTP client each HTTP provider owns: a lean keep-alive pool (providers/pool.py)
for JSON calls and streams, the hot path; aiohttp for other bodies (multipart). Both chosen by measurement.
aiohttp is imported on first use (9 MB and 0.2 s at start that a JSON-only gateway never needs)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from yarl import URL

from ..config import ProviderConfig
from ..errors import RunyardError, TimeoutError, UpstreamError
from ..telemetry import tracing
from .base import upstream_status_error
from .egress import proxy_for, ssl_context
from .pool import ConnectionPool

if TYPE_CHECKING:
    import aiohttp

_SSE_ACCEPT = b"Accept: text/event-stream\r\n"
USER_AGENT = "runyard-gateway"


def endpoint(base_url: str, path: str) -> URL:
    """A pre-parsed upstream URL (parsed once, not per request)."""
    return URL(base_url.rstrip("/") + path, encoded=True)


class UpstreamClient:
    """One aiohttp session per provider: pooled, keep-alive, TCP_NODELAY, connect/read timeouts."""

    def __init__(self, name: str, config: ProviderConfig, headers: dict[str, str]) -> None:
        self.name = name
        self._config = config
        self._headers = {**headers, **config.headers}
        self._session: aiohttp.ClientSession | None = None
        self._pools: dict[tuple[str, str | None, int | None], ConnectionPool] = {}
        self._proxies: dict[tuple[str, str | None], tuple[str | None, aiohttp.BasicAuth | None]] = {}

    def _pool(self, url: URL) -> ConnectionPool:
        origin = (url.scheme, url.host, url.port)
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = ConnectionPool(
                str(url.origin()),
                {"User-Agent": USER_AGENT, **self._headers},
                connect_timeout=self._config.connect_timeout,
                read_timeout=self._config.timeout,
                limit=self._config.max_connections,
                proxy=proxy_for(url.scheme, url.host or ""),
                ssl_context=ssl_context(self._config.ca_bundle),
            )
        return pool

    def _proxy(self, url: URL) -> tuple[str | None, aiohttp.BasicAuth | None]:
        """The proxy for ``url``'s origin from HTTPS_PROXY / HTTP_PROXY / NO_PROXY (providers/egress.py),
        read once per origin as the pool does; credentials in its URL become Proxy-Authorization."""
        origin = (url.scheme, url.host)
        found = self._proxies.get(origin)
        if found is None:
            import aiohttp

            proxy, auth = proxy_for(url.scheme, url.host or ""), None
            if proxy is not None:
                parsed = URL(proxy)
                if parsed.user is not None:
                    auth = aiohttp.BasicAuth(parsed.user, parsed.password or "")
                    proxy = str(parsed.with_user(None))
            found = self._proxies[origin] = (proxy, auth)
        return found

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            import aiohttp

            connector = aiohttp.TCPConnector(
                limit=self._config.max_connections,
                ttl_dns_cache=300,
                keepalive_timeout=30,
                enable_cleanup_closed=False,
                socket_factory=_nodelay_socket,
                ssl=ssl_context(self._config.ca_bundle),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._config.connect_timeout, sock_read=self._config.timeout
                ),
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **self._headers},
                cookie_jar=aiohttp.DummyCookieJar(),  # an API gateway keeps no cookies; saves work per request
                # The proxy comes from _proxy per origin, as for the pool. aiohttp's trust_env looked
                # it up in a worker thread on every request (asyncio.to_thread): +0.2 ms to each
                # stream's first byte, 19% of the gateway's samples at stream c=1.
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def post_json(self, url: URL, body: bytes) -> bytes:
        """POST a JSON body and return the 2xx body; every failure becomes a typed error."""
        try:
            answer = await self._pool(url).post(url.raw_path_qs, body, _traceparent())
        except Exception as err:
            raise self._pool_error(err) from err
        if answer.status >= 300:
            raise upstream_status_error(self.name, answer.status, answer.body, answer.headers)
        return answer.body

    async def post(self, url: URL, data: Any, content_type: str | None = None) -> tuple[bytes, str]:
        """POST any body (bytes, or ``aiohttp.FormData`` for multipart); the 2xx body and its
        content type. For audio and image APIs, whose answers are not always JSON."""
        status, body, headers = await self.call("POST", url, data, content_type)
        if status >= 300:
            raise upstream_status_error(self.name, status, body, headers)
        return body, headers.get("Content-Type", "application/octet-stream")

    async def call(
        self, method: str, url: URL, data: Any = None, content_type: str | None = None
    ) -> tuple[int, bytes, Any]:
        """Any request (``aiohttp.FormData`` for multipart): ``(status, body, headers)`` whatever the
        status, for callers that read some statuses themselves; transport failures are typed errors."""
        import aiohttp

        try:
            if isinstance(data, aiohttp.FormData):
                payload = data()
                content_type = payload.content_type
                data = payload
            headers = {"Content-Type": content_type} if content_type else {}
            tp = tracing.traceparent()
            if tp:
                headers["traceparent"] = tp
            proxy, proxy_auth = self._proxy(url)
            session = self._get_session()
            async with session.request(
                method, url, data=data, headers=headers, proxy=proxy, proxy_auth=proxy_auth
            ) as resp:
                return resp.status, await resp.read(), resp.headers
        except Exception as err:
            raise self.transport_error(err) from err

    async def post_stream(self, url: URL, body: bytes) -> AsyncGenerator[bytes, None]:
        """POST and yield the body as it arrives (for SSE: see :func:`runyard.sse.aiter_sse`), through
        the same pool as JSON calls; failures become typed errors."""
        try:
            async with self._pool(url).stream(url.raw_path_qs, body, _SSE_ACCEPT + _traceparent()) as answer:
                if answer.status >= 300:
                    data = await answer.read_all()
                    raise upstream_status_error(self.name, answer.status, data, answer.headers)
                while piece := await answer.read():
                    yield piece
        except (RunyardError, GeneratorExit):
            raise
        except Exception as err:
            raise self._pool_error(err) from err

    def _pool_error(self, err: Exception) -> RunyardError:
        if isinstance(err, ssl.SSLError):  # also a ValueError: not a broken answer, an untrusted upstream
            return UpstreamError(f"{self.name}: cannot reach upstream: {err}", code="upstream_unreachable")
        if isinstance(err, ValueError | ConnectionResetError):
            return UpstreamError(f"{self.name}: upstream answer broken: {err}", code="upstream_disconnected")
        return self.transport_error(err)

    def transport_error(self, err: BaseException) -> RunyardError:
        aiohttp = sys.modules.get("aiohttp")  # not imported yet: err is not one of its errors
        if isinstance(err, asyncio.TimeoutError) or (aiohttp and isinstance(err, aiohttp.ServerTimeoutError)):
            return TimeoutError(f"{self.name}: upstream timed out", code="upstream_timeout")
        if aiohttp and isinstance(err, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
            return UpstreamError(f"{self.name}: upstream connection dropped: {err}", code="upstream_disconnected")
        if isinstance(err, OSError) or (aiohttp and isinstance(err, aiohttp.ClientError)):
            return UpstreamError(f"{self.name}: cannot reach upstream: {err}", code="upstream_unreachable")
        return UpstreamError(f"{self.name}: upstream failure: {err!r}", code="upstream_error")


def _traceparent() -> bytes:
    """The attempt's span as a raw ``traceparent`` header line, when tracing (W3C Trace Context)."""
    tp = tracing.traceparent()
    return b"traceparent: %s\r\n" % tp.encode() if tp else b""


def _nodelay_socket(addr_info: Any) -> socket.socket:
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    if family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
