"""CPU per request of several gateways (source trees and/or configs), paired by cycle.

On a shared VM the same gateway's CPU per request drifts by 10-30% within minutes, more than the
differences worth measuring. This runs every gateway at once (pinned to CPU 1; the mock upstream
and wrk on CPU 0) and loads them in turn with short wrk bursts, cycle after cycle (order reversed
every other cycle), reading each process's CPU time from /proc. Each cycle's ratio to the first
gateway compares bursts taken seconds apart, so drift cancels; the median ratio is reported.

    .venv/bin/python bench/paired.py before=/tmp/wt-old/src after=src            # --features config
    .venv/bin/python bench/paired.py on=src off=src@/tmp/no-metrics.toml --conns 1

NAME=SRC[@CONFIG]: SRC goes on PYTHONPATH (a worktree's ``src``: ``git worktree add /tmp/wt-old
<commit>``); CONFIG defaults to bench/runyard-features.toml (``--plain``: bench/runyard.toml and
the OpenAI route). Needs ``wrk`` and ``taskset``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEY = "ry_bench_features_key"  # its hash is in runyard-features.toml
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"paired: not ready: {url}")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, every thread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gateways", nargs="+", metavar="NAME=SRC[@CONFIG]")
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=3, help="each burst")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--plain", action="store_true", help="bench/runyard.toml and /v1/chat/completions")
    ap.add_argument("--shared-bench", default=os.environ.get("SHARED_BENCH", str(REPO.parent / "shared" / "bench")))
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="paired-"))
    default_config = REPO / "bench" / ("runyard.toml" if a.plain else "runyard-features.toml")
    path = "/v1/chat/completions" if a.plain else "/v1/ai/chat"
    body: dict[str, object] = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
    body.update(
        {"model": "mock-gpt"} if a.plain else {"task": "general", "prefer": "cheapest", "cache_strategy": "runyard"}
    )
    script = work / "post.lua"
    script.write_text(
        f'wrk.method="POST"\nwrk.body=[[{json.dumps(body)}]]\nwrk.headers["Content-Type"]="application/json"\n'
        f'wrk.headers["Authorization"]="Bearer {KEY}"\n'
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        mock_port = free_port()
        mock_cmd = [sys.executable, f"{a.shared_bench}/mock_upstream.py", "--port", str(mock_port), "--server", "raw"]
        procs.append(subprocess.Popen(["taskset", "-c", "0", *mock_cmd], stdout=subprocess.DEVNULL))
        wait(f"http://127.0.0.1:{mock_port}/v1/models", 30)
        gateways: list[tuple[str, int, subprocess.Popen[bytes]]] = []
        for i, spec in enumerate(a.gateways):
            name, _, rest = spec.partition("=")
            src, _, config = rest.partition("@")
            port = free_port()
            env = dict(
                os.environ,
                PYTHONPATH=str(Path(src).resolve()),
                MOCK_BASE_URL=f"http://127.0.0.1:{mock_port}/v1",
                RUNYARD_BENCH_DB=str(work / f"{i}.db"),
            )
            cmd = [sys.executable, "-m", "runyard", "serve", "--config", config or str(default_config)]
            log = (work / f"{name}.log").open("wb")
            proc = subprocess.Popen(["taskset", "-c", "1", *cmd, "--port", str(port)], env=env, stdout=log, stderr=log)
            procs.append(proc)
            gateways.append((name, port, proc))
        for _, port, _ in gateways:
            wait(f"http://127.0.0.1:{port}/healthz", 90)

        def burst(port: int, seconds: int) -> int:
            url = f"http://127.0.0.1:{port}{path}"
            cmd = ["wrk", "-t1", f"-c{a.conns}", f"-d{seconds}s", "-s", str(script), url]
            out = subprocess.run(["taskset", "-c", "0", *cmd], capture_output=True, text=True, check=True).stdout
            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            if bad:
                raise SystemExit(f"paired: {bad.group(1)} failed requests on {url}; logs in {work}")
            return int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]

        for _, port, _ in gateways:  # one request first (a capped key's first cost), then warm up
            urllib.request.urlopen(
                urllib.request.Request(
                    f"http://127.0.0.1:{port}{path}",
                    data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
                ),
                timeout=30,
            ).read()
            burst(port, 2)
        per_request: dict[str, list[float]] = {name: [] for name, _, _ in gateways}
        served: dict[str, int] = dict.fromkeys(per_request, 0)
        for cycle in range(a.cycles):
            for name, port, proc in gateways if cycle % 2 == 0 else gateways[::-1]:
                before = cpu_s(proc.pid)
                n = burst(port, a.seconds)
                time.sleep(0.3)  # the recorder's trailing writes belong to this burst
                per_request[name].append((cpu_s(proc.pid) - before) / n)
                served[name] += n
        first = gateways[0][0]
        for name, _, proc in gateways:
            cpu = per_request[name]
            rate = served[name] / (a.cycles * a.seconds)
            rss = int(Path(f"/proc/{proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]) // 1024
            line = (
                f"{name}: {statistics.median(cpu) * 1e6:.1f} us CPU/req (median burst), {rate:.0f} req/s, RSS {rss} MB"
            )
            if name != first:
                ratios = [x / y for x, y in zip(cpu, per_request[first], strict=True)]
                each = " ".join(f"{r:.3f}" for r in ratios)
                line += f"; vs {first}, paired by cycle: median {statistics.median(ratios):.3f} ({each})"
            print(line)
    finally:
        for proc in procs:
            proc.terminate()


if __name__ == "__main__":
    main()
