#!/usr/bin/env python3
"""Open-loop load: requests arrive at a fixed rate over N keep-alive connections (like wrk2 -R).

    python bench/openloop.py --base-url http://127.0.0.1:PORT/v1 --rate 1000 -c 32 -d 10

A closed loop (wrk, loadgen) keeps every connection busy, so at concurrency 32 its latency is
queueing in the server (p50 ~ 32 / req/s) and says little about what the gateway adds to one
request. Here request i is due at ``start + i / rate``; it goes out on the first idle connection,
and its latency counts from when it was due, not when it was sent (no coordinated omission: a
stalled server is charged for the requests that waited). Prints one JSON line: rate asked and
achieved, latency p50/p90/p99/max in ms, errors, late (requests that found every connection busy).

The connection class is the shared load generator's (``../shared/bench/loadgen.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit


def _loadgen(shared: str | None):  # type: ignore[no-untyped-def]
    path = Path(shared or os.environ.get("SHARED_BENCH") or Path(__file__).resolve().parents[2] / "shared" / "bench")
    sys.path.insert(0, str(path))
    import loadgen  # the shared harness: its httptools connection and percentile helpers

    return loadgen


async def run(a: argparse.Namespace, body: bytes) -> dict:
    lg = _loadgen(a.shared_bench)
    loop = asyncio.get_running_loop()
    u = urlsplit(a.base_url)
    path = a.path or (u.path + "/chat/completions")
    headers = "".join(f"{h}\r\n" for h in a.header)
    raw = (
        f"POST {path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body
    idle: asyncio.Queue = asyncio.Queue()
    try:
        for _ in range(a.concurrency):
            _, conn = await loop.create_connection(lambda: lg._Conn(loop), u.hostname, u.port or 80)
            idle.put_nowait(conn)
    except OSError as err:
        raise SystemExit(f"openloop: cannot connect to {u.netloc}: {err}") from None
    lat: list[float] = []
    errors: dict[str, int] = {}
    late = 0

    async def one(due: float, record: bool) -> None:
        nonlocal late
        if idle.empty():
            late += record
        conn = await idle.get()
        try:
            await asyncio.wait_for(conn.request(raw), a.timeout)
            ok = 200 <= conn.status < 300
        except Exception as err:  # counted; the run goes on
            ok = False
            errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
            conn.t.close()
            _, conn = await loop.create_connection(lambda: lg._Conn(loop), u.hostname, u.port or 80)
        else:
            if not ok:
                errors[str(conn.status)] = errors.get(str(conn.status), 0) + 1
        idle.put_nowait(conn)
        if record and ok:
            lat.append(time.perf_counter() - due)

    interval = 1.0 / a.rate
    start = time.perf_counter()
    warm_end = start + a.warmup
    end = warm_end + a.duration
    jobs: set[asyncio.Task] = set()
    i = 0
    while True:
        due = start + i * interval
        if due >= end:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        job = asyncio.ensure_future(one(due, due >= warm_end))
        jobs.add(job)
        job.add_done_callback(jobs.discard)
        i += 1
    if jobs:
        await asyncio.wait(jobs, timeout=a.timeout + 5)
    while not idle.empty():
        idle.get_nowait().t.close()
    lat.sort()
    return {
        "engine": "openloop",
        "rate": a.rate,
        "achieved_rps": round(len(lat) / a.duration, 1),
        "concurrency": a.concurrency,
        "duration_s": a.duration,
        "ok": len(lat),
        "late": late,
        "errors": errors,
        "lat_ms": lg.summary_ms(lat),
        "label": a.label,
    }


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:4000/v1")
    ap.add_argument("--path", default=None, help="path instead of <base path>/chat/completions")
    ap.add_argument("--model", default=None)
    ap.add_argument("--body-file", default=None, help="JSON body to send (default: loadgen's chat body)")
    ap.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    ap.add_argument("--rate", type=_positive, default=1000.0, help="requests per second")
    ap.add_argument("-c", "--concurrency", type=int, default=32, help="keep-alive connections")
    ap.add_argument("-d", "--duration", type=float, default=10.0, help="seconds measured")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of unrecorded load first")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--label", default="")
    ap.add_argument("--no-precheck", action="store_true", help="accepted for loadgen's arguments; no precheck here")
    ap.add_argument("--shared-bench", default=None, help="dir holding loadgen.py (default ../shared/bench)")
    a = ap.parse_args(argv)
    body = _loadgen(a.shared_bench).build_body("chat", a.model or "mock-gpt", body_file=a.body_file)
    try:
        import uvloop

        out = uvloop.run(run(a, body))
    except ImportError:
        out = asyncio.run(run(a, body))
    print(json.dumps(out, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
