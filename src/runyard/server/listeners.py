"""One listening socket per gateway process for ``runyard serve --workers N`` (``SO_REUSEPORT``).

uvicorn's supervisor binds one socket and hands the same socket to every process. Keep-alive
connections stay with the process that accepted them, and whichever process woke first took
them: in one benchmark run one of two processes accepted all 32 connections and the other sat
idle. With ``SO_REUSEPORT`` each process listens on a socket of its own bound to the same port,
and the kernel spreads new connections across them by their addresses.

:class:`ReusePortPlaceholder` is what the supervisor holds and passes on: bound (so the port is
taken, and a second ``runyard serve`` on it fails at once) but never listening, so the kernel
sends it no connections. A process that unpickles it (uvicorn starts each with ``spawn``, the
sockets among the pickled arguments, restarts included) gets a fresh socket bound the same way,
which uvicorn then listens on.
"""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["ReusePortPlaceholder", "placeholder", "reuse_port_socket"]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEADDR`` and ``SO_REUSEPORT`` (not listening)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ReusePortPlaceholder(socket.socket):
    """The supervisor's bound, non-listening socket; unpickled in a worker process, a new
    socket of the worker's own on the same address (see the module's docstring)."""

    def __reduce__(self) -> tuple[Any, ...]:
        host, port = self.getsockname()[:2]
        return reuse_port_socket, (host, port)


def placeholder(host: str, port: int) -> ReusePortPlaceholder:
    """The supervisor's socket for ``host:port`` (port 0: the one the system picked, for all).

    Raises OSError (address in use) when anything holds the port already, another ``--workers``
    supervisor included: ``SO_REUSEPORT`` alone would let a second deployment share the port and
    silently take half of the connections."""
    if port:
        probe = socket.socket(_family(host), socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no holder
            probe.bind((host, port))
        finally:
            probe.close()
    plain = reuse_port_socket(host, port)
    return ReusePortPlaceholder(plain.family, plain.type, plain.proto, fileno=plain.detach())
