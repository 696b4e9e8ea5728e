#!/usr/bin/env python3
"""Micro-benchmark of the per-request cost of API-key auth and limits (not a test).

    .venv/bin/python bench/limits_bench.py [--n 200000] [--keys 1000]

Prints nanoseconds per operation for:
  - the limiter alone: ``LimitService.check`` (rpm only; rpm + tokens/min + spend) and a
    read's peek, and the usage observer (``observe``) that runs after each inference;
  - the ASGI middleware around a no-op app: auth only (a key without limits) vs auth + limits
    (the X-RateLimit-* headers added through the wrapped ``send``);
  - one background reload of the API keys from SQLite with ``--keys`` keys (what makes a
    revocation visible within ``server.api_key_refresh_s``; off the request path).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from runyard.backends.store import Store
from runyard.config import LimitsConfig, hash_api_key, parse_config
from runyard.gateway import Gateway
from runyard.server.guard import Guard, GuardMiddleware
from runyard.services.limits import NOT_METERED, SYNC, LimitService


async def per_op(fn: Any, n: int, rounds: int = 5) -> float:
    """Median ns per call of the coroutine function ``fn`` over ``rounds`` runs of ``n``."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for _ in range(n):
            await fn()
        results.append((time.perf_counter_ns() - started) / n)
    return statistics.median(results)


def per_op_sync(fn: Any, n: int, rounds: int = 5) -> float:
    results = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for _ in range(n):
            fn()
        results.append((time.perf_counter_ns() - started) / n)
    return statistics.median(results)


async def limiter(n: int) -> None:
    # Limits high enough never to refuse: we time the admitted path.
    service = LimitService(LimitsConfig(), None)
    rpm = service.policy("k1", {"rpm_sync": 10**9})
    full = service.policy("k2", {"rpm_sync": 10**9, "tpm": 10**12, "spend_limit": 10**9})
    await service.seed("k2")
    service.backend.add_usage("k2", 100, 0.01)
    result = SimpleNamespace(usage=SimpleNamespace(input_tokens=10, output_tokens=20), cost=0.001, cache_hit=False)
    ctx = SimpleNamespace(api_key_id="k2")
    print(f"limiter check, rpm only            {await per_op(lambda: service.check(rpm, SYNC), n):8.0f} ns")
    print(f"limiter check, rpm + tpm + spend   {await per_op(lambda: service.check(full, SYNC), n):8.0f} ns")
    print(f"limiter peek (reads)               {await per_op(lambda: service.check(rpm, NOT_METERED), n):8.0f} ns")
    print(f"usage observer (after inference)   {per_op_sync(lambda: service.observe(ctx, result), n):8.0f} ns")


async def middleware(n: int, tmp: Path) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    results = {}
    for label, limits in (("auth only (no limits)", {}), ("auth + limits (rpm_sync)", {"rpm_sync": 10**9})):
        config = parse_config(
            {
                "server": {"api_keys": [hash_api_key("bench-key")]},
                "storage": {"url": f"sqlite+aiosqlite:///{tmp / (str(len(results)) + '.db')}"},
                "limits": limits,
            }
        )
        gateway = Gateway(config)
        await gateway.store.start()
        await gateway.auth.start()
        try:
            mw = GuardMiddleware(app, Guard.for_gateway(gateway))
            headers = [(b"host", b"x"), (b"authorization", b"Bearer bench-key"), (b"content-type", b"application/json")]

            async def call(mw: Any = mw, headers: Any = headers) -> None:
                scope = {"type": "http", "method": "POST", "path": "/v1/ai/chat", "headers": headers}
                await mw(scope, receive, send)

            results[label] = await per_op(call, n)
        finally:
            await gateway.auth.aclose()
            await gateway.store.aclose()
    for label, ns in results.items():
        print(f"middleware: {label:24s}{ns:8.0f} ns")
    base = results["auth only (no limits)"]
    print(f"  limits add                       {results['auth + limits (rpm_sync)'] - base:8.0f} ns per request")


async def refresh(keys: int, tmp: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp / 'keys.db'}")
    await store.start()
    try:
        for i in range(keys):
            await store.add_api_key(f"k{i}", hash_api_key(f"secret-{i}"), rpm_sync=60)
        from runyard.services.auth import ApiKeyAuth

        auth = ApiKeyAuth([], store)
        await auth.refresh()
        for label, force in (("unchanged table (every 1 s)", False), ("full reload (after a create/revoke)", True)):
            times = []
            for _ in range(20):
                started = time.perf_counter()
                await auth.refresh(force=force)
                times.append((time.perf_counter() - started) * 1000)
            print(f"key refresh, {keys} keys, {label}: median {statistics.median(times):.2f} ms")
    finally:
        await store.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await limiter(args.n)
        await middleware(args.n // 4, Path(tmp))
        await refresh(args.keys, Path(tmp))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
