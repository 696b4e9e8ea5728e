"""Outbound URL guard: server-side fetches reach public addresses only, and exactly the checked ones.

A host is resolved once, *every* address is checked, and the connection goes to a checked
address: there is no second lookup between the check and the connect (no DNS-rebinding window).
The clients below enforce it on every connection, so every hop of a redirect is checked too:

- :func:`guarded_session` — an ``aiohttp.ClientSession`` whose resolver checks each answer and
  whose socket factory refuses any non-public address it is asked to connect to (IP literals
  included);
- :func:`guarded_transport` — an ``httpx`` transport whose network backend resolves, checks and
  connects to the checked address (TLS still verifies the name).

"Public" means globally reachable: the ``ipaddress`` properties plus the IANA IPv4/IPv6
special-purpose registries; addresses that wrap an IPv4 address (IPv4-mapped, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32``) are judged by what they wrap, and
local-use NAT64 (``64:ff9b:1::/48``) is refused. Neither client uses a proxy: a proxy would do its
own lookup. :func:`check_url` remains for an early, typed refusal of a URL before any work.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidRequestError

__all__ = [
    "Resolver",
    "UnsafeURLError",
    "check_url",
    "guarded_session",
    "guarded_transport",
    "is_public_address",
    "resolve_checked",
    "system_resolver",
]

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``: how names are looked up (tests pass their own)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The IANA special-purpose registries (iana-ipv4/ipv6-special-registry), every block that is not
# globally reachable, kept here so the check does not depend on the Python version's own list.
_SPECIAL_V4 = (
    "0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12 192.0.0.0/24 192.0.2.0/24 "
    "192.31.196.0/24 192.52.193.0/24 192.88.99.0/24 192.168.0.0/16 192.175.48.0/24 198.18.0.0/15 "
    "198.51.100.0/24 203.0.113.0/24 224.0.0.0/4 240.0.0.0/4 255.255.255.255/32"
)
_SPECIAL_V6 = (
    "::/128 ::1/128 ::ffff:0:0/96 64:ff9b:1::/48 100::/64 100:0:0:1::/64 2001::/23 2001:db8::/32 "
    "2002::/16 3fff::/20 5f00::/16 fc00::/7 fe80::/10 fec0::/10 ff00::/8 ::/96"
)
SPECIAL_PURPOSE_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(n) for n in (_SPECIAL_V4 + " " + _SPECIAL_V6).split()
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeURLError(InvalidRequestError):
    default_code = "unsafe_url"


def _unwrap(ip: IPAddress) -> list[IPAddress] | None:
    """The IPv4 addresses an IPv6 address stands for (mapped, NAT64, 6to4, Teredo), else None."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)  # the server and the (de-obfuscated) client
    return None


def is_public_address(address: str | IPAddress) -> bool:
    """True only for a globally reachable unicast address (wrapped IPv4 judged as itself)."""
    ip = address if not isinstance(address, str) else ipaddress.ip_address(address.split("%", 1)[0])
    wrapped = _unwrap(ip)
    if wrapped is not None:
        return all(is_public_address(inner) for inner in wrapped)
    if any(ip.version == net.version and ip in net for net in SPECIAL_PURPOSE_NETWORKS):
        return False
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_checked(
    host: str, port: int, *, allow_private: bool = False, resolver: Resolver | None = None, field: str = "url"
) -> list[str]:
    """Resolve ``host`` once and return its addresses, all checked; a typed refusal otherwise."""
    host = host.strip("[]")
    try:
        addresses = [str(ipaddress.ip_address(host.split("%", 1)[0]))]
    except ValueError:
        try:
            addresses = await (resolver or system_resolver)(host, port)
        except (OSError, UnicodeError) as err:
            raise UnsafeURLError(f"{field}: cannot resolve {host!r}: {err}", code="unresolvable_url") from None
    if allow_private:
        return addresses
    bad = sorted(a for a in addresses if not is_public_address(a))
    if not addresses or bad:
        raise UnsafeURLError(
            f"{field}: {host!r} resolves to a non-public address ({', '.join(bad) or 'none'}); "
            "set webhooks.allow_private_webhooks = true to allow it",
            code="url_not_allowed",
        )
    return addresses


def _split(url: str, field: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port, parts = None, parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURLError(f"{field} must be an http(s) URL with a host", code="invalid_url")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_url(
    url: str, *, allow_private: bool = False, field: str = "url", resolver: Resolver | None = None
) -> str:
    """Return ``url`` if it is an http(s) URL whose host resolves only to public addresses.

    An early refusal only: connect with :func:`guarded_session` / :func:`guarded_transport`,
    which check the address they actually connect to."""
    host, port = _split(url, field)
    if not allow_private:
        await resolve_checked(host, port, resolver=resolver, field=field)
    return url


# --------------------------------------------------------------------------- aiohttp


def guarded_session(
    *, allow_private: bool = False, resolver: Resolver | None = None, timeout_s: float | None = None, **kwargs: Any
) -> Any:
    """An ``aiohttp.ClientSession`` that connects only to checked, public addresses (every hop).

    A drop-in for ``aiohttp.ClientSession(...)`` at the call sites that fetch user-given URLs."""
    import aiohttp

    from ._pinned_aiohttp import CheckingResolver, checked_socket_factory

    connector = aiohttp.TCPConnector(
        resolver=CheckingResolver(allow_private=allow_private, resolver=resolver),
        use_dns_cache=False,
        socket_factory=None if allow_private else checked_socket_factory,
    )
    if timeout_s is not None:
        kwargs.setdefault("timeout", aiohttp.ClientTimeout(total=timeout_s))
    return aiohttp.ClientSession(connector=connector, trust_env=False, **kwargs)


# --------------------------------------------------------------------------- httpx


def guarded_transport(*, allow_private: bool = False, resolver: Resolver | None = None) -> Any:
    """An ``httpx.AsyncHTTPTransport`` whose connections go to the checked addresses only."""
    from ._pinned_httpx import PinnedTransport

    return PinnedTransport(allow_private=allow_private, resolver=resolver)
