"""One Redis connection for the hot path's commands, pipelined automatically.

Admission, the response cache and the usage flush send a command or two per request. Through
redis-py's asyncio client each command cost 35 µs of the gateway's CPU (a pooled connection, a
timeout context, a drain, its parser's layers); here the commands issued in one loop turn leave
in one ``write`` on one connection, and hiredis (the parser redis-py itself uses) reads the
replies, which resolve the callers' futures in order: 2-3 µs a command (bench/README.md). The
rest of the backends (pub/sub, locks, idempotency, seeding) keep redis-py.

A command is sent once, never retried: a lost connection fails the commands in flight with
``redis.exceptions.ConnectionError`` and the next command connects again; a Redis that does not
answer within ``timeout_s`` fails them with ``redis.exceptions.TimeoutError`` and drops the
connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

Arg = bytes | str | int | float


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA-1 (what EVALSHA names it by)."""

    text: str
    sha: str

    @classmethod
    def of(cls, text: str) -> Script:
        return cls(text, hashlib.sha1(text.encode()).hexdigest())


class _Protocol(asyncio.Protocol):
    """The connection: commands out in one write a loop turn, replies matched to callers in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._reader = hiredis.Reader()
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._watch: asyncio.TimerHandle | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not asyncio's class

    def call(self, args: tuple[Arg, ...]) -> asyncio.Future[Any]:
        future = self._loop.create_future()
        if self.lost is not None:
            future.set_exception(ConnectionError(f"Redis connection lost: {self.lost}"))
            return future
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(hiredis.pack_command(args))  # type: ignore[arg-type]  # its stub types a 1-tuple
        if not self._waiting and self._watch is None:
            self._watch = self._loop.call_later(self._timeout_s, self._check)
        self._waiting.append((future, time.monotonic()))
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self._transport is not None and self.lost is None:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                future, _ = self._waiting.popleft()
                if future.done():  # its caller was cancelled; the reply is dropped in order
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(_error(str(reply)))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as err:  # not Redis, or a reply nobody asked for
            self._fail(ConnectionError(f"Redis protocol error: {err!r}"))

    def _check(self) -> None:
        """The watchdog: fail everything when the oldest command has waited ``timeout_s``."""
        self._watch = None
        if not self._waiting or self.lost is not None:
            return
        due = self._waiting[0][1] + self._timeout_s
        if time.monotonic() >= due:
            self._fail(TimeoutError(f"Redis did not answer within {self._timeout_s:g} s"))
        else:
            self._watch = self._loop.call_later(due - time.monotonic(), self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"Redis connection lost: {exc or 'closed by the server'}"))

    def _fail(self, err: Exception) -> None:
        if self.lost is None:
            self.lost = err
        if self._transport is not None:
            self._transport.abort()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(err)

    def close(self) -> None:
        self._fail(ConnectionError("Redis connection closed"))


def _error(message: str) -> ResponseError:
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)


class PipelinedRedis:
    """Commands on one lazily opened connection (``redis://``, ``rediss://`` or ``unix://`` URL,
    with its user, password and database), every loop turn's in one write."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, connect_timeout_s: float = 5.0) -> None:
        self._options = parse_url(url)
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    def execute(self, *args: Arg) -> asyncio.Future[Any]:
        """The reply to one command (bytes, int, list or None), or its error raised."""
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol.call(args)
        return asyncio.ensure_future(self._execute_connecting(args))

    async def _execute_connecting(self, args: tuple[Arg, ...]) -> Any:
        return await (await self._connected()).call(args)

    async def run_script(self, script: Script, keys: list[str], args: list[Arg]) -> Any:
        """EVALSHA, or EVAL when Redis has not got the script (a restart forgot it): that loads it."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", script.text, len(keys), *keys, *args)

    async def _connected(self) -> _Protocol:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Protocol:
        try:
            protocol = await asyncio.wait_for(self._open(), self._connect_timeout_s)
        except (OSError, asyncio.TimeoutError) as err:
            raise ConnectionError(f"cannot connect to Redis: {err or type(err).__name__}") from err
        self._protocol = protocol
        return protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options: dict[str, Any] = dict(self._options)
        protocol: _Protocol
        if "path" in options:
            _, protocol = await loop.create_unix_connection(lambda: _Protocol(loop, self._timeout_s), options["path"])
        else:
            tls = _tls_context(options) if options.get("connection_class") is SSLConnection else None
            host, port = options.get("host", "localhost"), options.get("port", 6379)
            _, protocol = await loop.create_connection(lambda: _Protocol(loop, self._timeout_s), host, port, ssl=tls)
        await _handshake(protocol, options)
        return protocol

    async def aclose(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None


async def _handshake(protocol: _Protocol, options: dict[str, Any]) -> None:
    """AUTH and SELECT as the URL asks; a refusal closes the connection and is raised."""
    try:
        if options.get("password"):
            user = [options["username"]] if options.get("username") else []
            await protocol.call(("AUTH", *user, options["password"]))
        if options.get("db"):
            await protocol.call(("SELECT", options["db"]))
    except BaseException:
        protocol.close()
        raise


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """``rediss://``: the default context; ``?ssl_cert_reqs=none`` turns verification off."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if str(options.get("ssl_cert_reqs", "required")).lower() in ("none", "cert_none"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
