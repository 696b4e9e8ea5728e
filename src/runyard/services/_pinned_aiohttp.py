"""aiohttp pieces of the URL guard (services/urlguard.py): a checking resolver, a checking socket."""

from __future__ import annotations

import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

from .urlguard import Resolver, is_public_address, resolve_checked


class CheckingResolver(AbstractResolver):
    """Resolves once per connection and hands aiohttp only checked addresses to connect to."""

    def __init__(self, *, allow_private: bool, resolver: Resolver | None) -> None:
        self._allow_private = allow_private
        self._resolver = resolver

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        addresses = await resolve_checked(host, port, allow_private=self._allow_private, resolver=self._resolver)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def checked_socket_factory(addr_info: Any) -> socket.socket:
    """The last word: no socket for a non-public address (covers IP literals aiohttp never resolves)."""
    family, type_, proto, _, sockaddr = addr_info
    if not is_public_address(str(sockaddr[0])):
        raise OSError(f"refusing to connect to non-public address {sockaddr[0]}")
    return socket.socket(family=family, type=type_, proto=proto)
