"""Outbound URL guard: refuse loopback, private, link-local and other non-public targets.

The host is resolved (DNS) and *every* address checked, so a public name pointing at
127.0.0.1 is refused too. Call it again right before connecting to narrow DNS rebinding.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from ..errors import InvalidRequestError

__all__ = ["UnsafeURLError", "check_url", "is_public_address"]


class UnsafeURLError(InvalidRequestError):
    default_code = "unsafe_url"


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


async def check_url(url: str, *, allow_private: bool = False, field: str = "url") -> str:
    """Return ``url`` if it is an http(s) URL whose host resolves only to public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURLError(f"{field} must be an http(s) URL with a host", code="invalid_url")
    if allow_private:
        return url
    host = parts.hostname
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError) as err:
        raise UnsafeURLError(f"{field}: cannot resolve {host!r}: {err}", code="unresolvable_url") from None
    addresses = {str(info[4][0]) for info in infos}
    bad = sorted(a for a in addresses if not is_public_address(a))
    if not addresses or bad:
        raise UnsafeURLError(
            f"{field}: {host!r} resolves to a non-public address ({', '.join(bad) or 'none'}); "
            "set webhooks.allow_private_webhooks = true to allow it",
            code="url_not_allowed",
        )
    return url
