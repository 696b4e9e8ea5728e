#!/usr/bin/env python3
"""Redis's own CPU per call (read from /proc for the redis-server process, so it must run on this
machine): a GET, an EVALSHA that does nothing, and Runyard's admission script with the request
limit, then tokens, then spend on. 32 concurrent callers, as under the gateway's load.

    .venv/bin/python bench/redis_cost.py [--redis redis://127.0.0.1:6379/0] [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from runyard.backends.redis_conn import connect
from runyard.backends.redis_limits import RedisLimitBackend
from runyard.config import RedisConfig


def _redis_cpu_s() -> float:
    pid = subprocess.run(["pgrep", "-o", "redis-server"], capture_output=True, text=True).stdout.split()[0]
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().split()
    return (int(fields[13]) + int(fields[14])) / 100


async def _per_call_us(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    async def caller() -> None:
        for _ in range(calls // 32):
            await call()

    before = _redis_cpu_s()
    await asyncio.gather(*(caller() for _ in range(32)))
    return (_redis_cpu_s() - before) / calls * 1e6


async def main(url: str, calls: int) -> None:
    prefix = f"bench-cost-{uuid.uuid4().hex[:8]}:"
    handle = connect(RedisConfig(url=url, prefix=prefix))
    limits = RedisLimitBackend(handle)
    nothing = handle.client.register_script("return 1")
    try:
        get = await _per_call_us(lambda: handle.client.get(prefix + "x"), calls)
        print(f"{'GET':<26} {get:5.1f} us")
        empty = await _per_call_us(lambda: nothing(keys=[prefix + "y"]), calls)
        print(f"{'EVALSHA of return 1':<26} {empty:5.1f} us")
        for name, admit in (
            ("admit: requests", ("s", "s:r", 10**8, 60, None, None, "day")),
            ("admit: + tokens", ("s", "s:r", 10**8, 60, 10**11, None, "day")),
            ("admit: + spend", ("s", "s:r", 10**8, 60, 10**11, 10**9, "day")),
        ):

            async def call(admit: tuple[Any, ...] = admit) -> None:
                admission = await limits.admit(*admit)
                if admission.reservation:
                    limits.release("s", admission.reservation)

            print(f"{name:<26} {await _per_call_us(call, calls):5.1f} us")
        await limits.drain()
    finally:
        keys = [key async for key in handle.client.scan_iter(prefix + "*")]
        if keys:
            await handle.client.delete(*keys)
        await handle.aclose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--calls", type=int, default=20_000)
    a = ap.parse_args()
    asyncio.run(main(a.redis, a.calls))
