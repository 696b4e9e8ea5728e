"""One Redis connection for the hot path's commands, pipelined automatically.

Admission, the response cache and the usage flush send a command or two per request. Through
redis-py's asyncio client each command cost 35 µs of the gateway's CPU (a pooled connection, a
timeout context, a drain, its parser's layers); here the commands issued in one loop turn leave
in one ``write`` on one connection, and hiredis (the parser redis-py itself uses) reads the
replies, which resolve the callers' futures in order: 2-3 µs a command (bench/README.md). The
rest of the backends (pub/sub, locks, idempotency, seeding) keep redis-py. A write nobody waits
on (a cache entry, the usage flush) may ``linger``: it goes out with the next command that is
waited on, or after ``LINGER_S``, so under load it costs no ``write`` of its own.

A command is sent once, never retried: a lost connection fails the commands in flight with
``redis.exceptions.ConnectionError`` and the next command connects again; a Redis that does not
answer within ``timeout_s`` fails them with ``redis.exceptions.TimeoutError`` and drops the
connection. Commands issued while the connection opens wait in it and go out once it is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

Arg = bytes | str | int | float
LINGER_S = 0.002  # the longest a lingering command waits for a write to go out with
log = logging.getLogger("runyard.redis")


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA-1 (what EVALSHA names it by)."""

    text: str
    sha: str

    @classmethod
    def of(cls, text: str) -> Script:
        return cls(text, hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest())


class _Protocol(asyncio.Protocol):
    """The connection: commands out in one write a loop turn, replies matched to callers in order.
    Commands issued while it connects wait in it, behind the URL's AUTH and SELECT."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, handshake: list[tuple[Arg, ...]]) -> None:
        self._loop = self.loop = loop
        self._timeout_s = timeout_s
        self._handshake = handshake
        self._handshaking: set[asyncio.Future[Any]] = set()  # AUTH / SELECT not answered yet
        self._reader = hiredis.Reader()
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._out: list[bytes] = []
        self._soon = False  # a flush at the end of this loop turn is scheduled
        self._later: asyncio.TimerHandle | None = None  # a lingering command's flush
        self._transport: asyncio.Transport | None = None
        self._watch: asyncio.TimerHandle | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not asyncio's class
        now = time.monotonic()
        for args in reversed(self._handshake):  # first on the wire, first answered
            future = self._loop.create_future()
            self._handshaking.add(future)
            self._waiting.appendleft((future, now))
            self._out.insert(0, hiredis.pack_command(args))  # type: ignore[arg-type]
        self._flush()

    def call(self, args: tuple[Arg, ...], linger: bool = False) -> asyncio.Future[Any]:
        future = self._loop.create_future()
        if self.lost is not None:
            future.set_exception(self.lost)
            return future
        if not linger:
            if not self._soon:
                self._soon = True
                self._loop.call_soon(self._flush)
        elif not self._soon and self._later is None:
            self._later = self._loop.call_later(LINGER_S, self._flush)
        self._out.append(hiredis.pack_command(args))  # type: ignore[arg-type]  # its stub types a 1-tuple
        if not self._waiting and self._watch is None:
            self._watch = self._loop.call_later(self._timeout_s, self._check)
        self._waiting.append((future, time.monotonic()))
        return future

    def _flush(self) -> None:
        self._soon = False
        if self._later is not None:
            self._later.cancel()
            self._later = None
        if self._transport is None or self.lost is not None:
            return  # still connecting: connection_made sends what waits
        out, self._out = self._out, []
        if out:
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
                    if future in self._handshaking:  # AUTH or SELECT refused: nothing behind it may run
                        self.fail(_error(str(reply)))
                        return
                    future.set_exception(_error(str(reply)))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as err:  # not Redis, or a reply nobody asked for
            self.fail(ConnectionError(f"Redis protocol error: {err!r}"))

    def _check(self) -> None:
        """The watchdog: fail everything when the oldest command has waited ``timeout_s``."""
        self._watch = None
        if not self._waiting or self.lost is not None:
            return
        due = self._waiting[0][1] + self._timeout_s
        if time.monotonic() >= due:
            self.fail(TimeoutError(f"Redis did not answer within {self._timeout_s:g} s"))
        else:
            self._watch = self._loop.call_later(due - time.monotonic(), self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"Redis connection lost: {exc or 'closed by the server'}"))

    def fail(self, err: BaseException) -> None:
        """Fail every command waiting with ``err`` (the first failure is kept for later calls)."""
        if self.lost is None:
            self.lost = err
        if self._transport is not None:
            self._transport.abort()
        for timer in (self._watch, self._later):
            if timer is not None:
                timer.cancel()
        self._watch = self._later = None
        self._out = []
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(err)

    async def settle(self, timeout_s: float) -> None:
        """Send what is queued now and wait (up to ``timeout_s``) for every reply outstanding."""
        self._flush()
        if self._waiting:
            await asyncio.wait([self._waiting[-1][0]], timeout=timeout_s)  # replies come in order

    def close(self) -> None:
        self.fail(ConnectionError("Redis connection closed"))


def _error(message: str) -> ResponseError:
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)


class PipelinedRedis:
    """Commands on one lazily opened connection (``redis://``, ``rediss://`` or ``unix://`` URL,
    with its user, password and database), every loop turn's in one write."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, connect_timeout_s: float = 5.0) -> None:
        self._options: dict[str, Any] = dict(parse_url(url))
        self._handshake = _handshake(self._options)
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._submitted: set[asyncio.Future[Any]] = set()  # script calls nobody waits on, until they end
        self._warned = 0.0  # when a failure of those was last logged

    def execute(self, *args: Arg, linger: bool = False) -> asyncio.Future[Any]:
        """The reply to one command (bytes, int, list or None), or its error raised; ``linger``:
        the command may wait up to ``LINGER_S`` for a write to go out with."""
        protocol, loop = self._protocol, asyncio.get_running_loop()
        if protocol is None or protocol.lost is not None or protocol.loop is not loop:
            if protocol is not None and protocol.lost is None:  # opened on another (finished) loop
                with contextlib.suppress(RuntimeError):  # that loop is closed
                    protocol.close()
            protocol = self._protocol = _Protocol(loop, self._timeout_s, self._handshake)
            self._connecting = loop.create_task(self._connect(protocol))  # the command waits in it
        return protocol.call(args, linger)

    async def run_script(self, script: Script, keys: Sequence[str], args: Sequence[Arg], linger: bool = False) -> Any:
        """EVALSHA, or EVAL when Redis has not got the script (a restart forgot it): that loads it."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args, linger=linger)
        except NoScriptError:
            return await self.execute("EVAL", script.text, len(keys), *keys, *args, linger=linger)

    def send(self, *args: Arg, what: str) -> asyncio.Future[Any]:
        """A lingering command nobody waits on (its reply is the returned future's); a failure is
        logged as "could not ``what``" (at most every 10 s)."""
        future = self.execute(*args, linger=True)
        future.add_done_callback(partial(self._log_failure, what))
        return future

    def submit(self, script: Script, keys: Sequence[str], args: Sequence[Arg], what: str) -> asyncio.Future[Any]:
        """A lingering script call nobody waits on, kept until it ends (``flush`` waits for it);
        a failure is logged as :meth:`send` logs it. Returns its future, for a callback."""
        task = asyncio.ensure_future(self.run_script(script, keys, args, linger=True))
        self._submitted.add(task)
        task.add_done_callback(self._submitted.discard)
        task.add_done_callback(partial(self._log_failure, what))
        return task

    def _log_failure(self, what: str, done: asyncio.Future[Any]) -> None:
        err = None if done.cancelled() else done.exception()
        if err is not None and time.monotonic() - self._warned > 10:
            self._warned = time.monotonic()
            log.warning("could not %s on Redis: %s", what, err)

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Send the lingering commands now and wait (up to ``timeout_s``) for the replies outstanding
        and the submitted script calls."""
        loop = asyncio.get_running_loop()
        submitted = [task for task in self._submitted if task.get_loop() is loop]
        if submitted:
            await asyncio.wait(submitted, timeout=timeout_s)
        protocol = self._protocol
        if protocol is not None and protocol.lost is None and protocol.loop is asyncio.get_running_loop():
            await protocol.settle(timeout_s)

    async def _connect(self, protocol: _Protocol) -> None:
        loop, options = asyncio.get_running_loop(), self._options
        try:
            if "path" in options:
                opening = loop.create_unix_connection(lambda: protocol, options["path"])
            else:
                tls = _tls_context(options) if options.get("connection_class") is SSLConnection else None
                host, port = options.get("host", "localhost"), options.get("port", 6379)
                opening = loop.create_connection(lambda: protocol, host, port, ssl=tls)
            await asyncio.wait_for(opening, self._connect_timeout_s)
        except (OSError, asyncio.TimeoutError) as err:
            protocol.fail(ConnectionError(f"cannot connect to Redis: {err or type(err).__name__}"))

    async def aclose(self) -> None:
        """Close, once what was queued has been sent and answered (up to a second)."""
        await self.flush(1.0)
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._protocol is not None:
            with contextlib.suppress(RuntimeError):  # opened on a loop that is closed by now
                self._protocol.close()
            self._protocol = None


def _handshake(options: dict[str, Any]) -> list[tuple[Arg, ...]]:
    """The commands a new connection starts with: AUTH and SELECT, as the URL asks."""
    commands: list[tuple[Arg, ...]] = []
    if options.get("password"):
        user = [options["username"]] if options.get("username") else []
        commands.append(("AUTH", *user, options["password"]))
    if options.get("db"):
        commands.append(("SELECT", options["db"]))
    return commands


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """``rediss://``: the default context; ``?ssl_cert_reqs=none`` turns verification off."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if str(options.get("ssl_cert_reqs", "required")).lower() in ("none", "cert_none"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
