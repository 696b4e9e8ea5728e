#!/usr/bin/env python3
"""Embedded SDKs side by side: Runyard's embedded client, TensorZero's embedded gateway and the
openai SDK (a plain HTTP client, the floor) against the shared mock upstream, in the same rounds.

    .venv/bin/python bench/inproc.py [--rounds 3] [--duration 5] [--configs sync:chat:1,async:chat:32]

Each run is a fresh process of ``../shared/bench/inproc_bench.py`` (so its RSS is one client's);
Runyard's goes through ``bench/inproc_runyard.py`` (``--client bench.inproc_runyard:embedded``).
Prints, per configuration and client, the median over rounds of req/s, p50/p99 latency, CPU ms
per request and RSS after the run, and Runyard's ratios to TensorZero (issue "Performance":
sync c=1 p50 <= 1.5x TensorZero's; async c=32 >= 80% of its req/s; RSS <= 110 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_BENCH", REPO.parent / "shared" / "bench"))
CLIENTS = {"runyard": "bench.inproc_runyard:embedded", "tensorzero": "tensorzero", "openai": "openai"}

TZ_CONFIG = """
[gateway]
observability.enabled = false

[models.mock-gpt]
routing = ["mock"]

[models.mock-gpt.providers.mock]
type = "openai"
model_name = "mock-gpt"
api_base = "{base}/"
api_key_location = "none"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(client: str, api: str, mode: str, c: int, seconds: float, base: str, tz: Path) -> dict:
    args = [
        sys.executable, str(SHARED / "inproc_bench.py"), "--client", CLIENTS[client], "--api", api,
        "--mode", mode, "-c", str(c), "-d", str(seconds), "--base-url", base, "--model", "mock-gpt",
        "--tz-config", str(tz),
    ]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=seconds + 120)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"inproc: {client} {api}:{mode}:{c} printed nothing\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--configs", default="sync:chat:1,async:chat:32")
    ap.add_argument("--clients", default="runyard,tensorzero,openai")
    a = ap.parse_args()
    port = _free_port()
    mock = subprocess.Popen(
        [sys.executable, str(SHARED / "mock_upstream.py"), "--port", str(port)], stdout=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}/v1"
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        time.sleep(1.0)
        with tempfile.TemporaryDirectory() as tmp:
            tz = Path(tmp) / "tensorzero.toml"
            tz.write_text(TZ_CONFIG.format(base=base))
            clients = a.clients.split(",")
            for r in range(a.rounds):
                order = clients[r % len(clients) :] + clients[: r % len(clients)]  # rotated each round
                for config in a.configs.split(","):
                    api, mode, c = config.split(":")
                    for client in order:
                        results.setdefault((config, client), []).append(
                            _run(client, api, mode, int(c), a.duration, base, tz)
                        )
    finally:
        mock.terminate()
        mock.wait(timeout=10)
    _report(results, a)


def _median(runs: list[dict], pick) -> float:
    return statistics.median(pick(r) for r in runs)


def _report(results: dict[tuple[str, str], list[dict]], a: argparse.Namespace) -> None:
    print(f"\n{a.rounds} rounds x {a.duration:g} s, medians; load average {os.getloadavg()[0]:.2f}\n")
    print("| config | client | req/s | p50 ms | p99 ms | CPU ms/req | RSS after run MB | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for (config, client), runs in results.items():
        errors = sum(sum(r["errors"].values()) for r in runs)
        print(
            f"| {config} | {client} | {_median(runs, lambda r: r['rps']):,.0f} | "
            f"{_median(runs, lambda r: r['lat_ms']['p50']):.3f} | {_median(runs, lambda r: r['lat_ms']['p99']):.3f} | "
            f"{_median(runs, lambda r: r['cpu_ms_per_req']):.3f} | "
            f"{_median(runs, lambda r: r['rss_mb']['after_run']):.0f} | {errors} |"
        )
    print()
    for config in a.configs.split(","):
        ry, tz = results.get((config, "runyard")), results.get((config, "tensorzero"))
        if not ry or not tz:
            continue
        p50 = _median(ry, lambda r: r["lat_ms"]["p50"]) / _median(tz, lambda r: r["lat_ms"]["p50"])
        rps = _median(ry, lambda r: r["rps"]) / _median(tz, lambda r: r["rps"])
        print(f"{config}: Runyard p50 = {p50:.2f}x TensorZero's; req/s = {rps:.0%} of TensorZero's")


if __name__ == "__main__":
    main()
