"""How upstream provider calls leave the gateway: the proxy and the CA bundle for a URL.

``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` (any case) are honoured as curl and requests do;
TLS trusts ``[providers.X] ca_bundle`` when set, else the system store (OpenSSL reads
``SSL_CERT_FILE`` / ``SSL_CERT_DIR``). Used by both client stacks (providers/pool.py, aiohttp in
providers/http.py). User-given URLs (file inputs, webhooks) go through services/urlguard.py
instead, never through a proxy.
"""

from __future__ import annotations

import ssl
import urllib.request
from functools import lru_cache

__all__ = ["proxy_for", "ssl_context"]


def proxy_for(scheme: str, host: str) -> str | None:
    """The proxy URL for ``scheme://host`` from the environment, or None (none set, or NO_PROXY)."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # public, untyped
    if not proxy or bypass(host, proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


@lru_cache(maxsize=16)
def ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """A verifying client context: ``ca_bundle`` (a PEM file) if given, else the default store."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
