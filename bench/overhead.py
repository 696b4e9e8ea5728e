#!/usr/bin/env python3
"""Runyard gateway overhead: direct-to-mock vs through Runyard, one command.

    .venv/bin/python bench/overhead.py                  # 3 rounds x 10 s (about 4 min)
    .venv/bin/python bench/overhead.py --rounds 1 --duration 3     # smoke run
    .venv/bin/python bench/overhead.py --profile /tmp/runyard-c32.speedscope.json
    .venv/bin/python bench/overhead.py --features --with-base   # routing+cache+limits vs base, same rounds
    .venv/bin/python bench/overhead.py --metrics                # /metrics counting vs telemetry off, same rounds
    .venv/bin/python bench/overhead.py --tracing                # OTLP traces (every request sampled) vs off

What it does (loopback only; everything started here is stopped by PID at the end,
also on Ctrl-C / SIGTERM):
  1. starts the shared mock upstream (``mock_upstream.py --server raw``) on a free port;
  2. starts ``runyard serve --config bench/runyard.toml`` on a free port (MOCK_BASE_URL
     and RUNYARD_BENCH_DB, a throwaway SQLite file, are passed in its environment;
     inference recording stays on) and waits until ``GET /v1/models`` answers 200;
  3. for each round, for each scenario, for both targets (order rotated per round) runs
     the shared ``loadgen.py`` (wrk for chat/embed when installed, else its py engine;
     py engine for streams, which reports TTFB) and keeps its JSON line;
  4. prints medians over rounds: req/s, p50, p99, added p50/p99 vs direct, CPU ms per
     request of the gateway (of the mock for "direct"), and PASS/MISS for the targets.

The shared tools come from ``<repo>/../shared/bench`` unless ``--shared-bench DIR`` or
``$SHARED_BENCH`` says otherwise. The raw JSON lines go to ``--out`` (default: a file in
the temp dir); they use run_peers.sh's format, so ``summarize.py FILE`` reads them too.

A benchmark, not a test: the exit status is 0 whether targets are met or missed, and
non-zero only when something could not run (a server did not start, every load run failed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "bench" / "runyard.toml"
FEATURES_CONFIG = REPO / "bench" / "runyard-features.toml"
FEATURES_KEY = "ry_bench_features_key"  # its hash is in runyard-features.toml

# Targets (see /work/shared/bench/RESULTS.md and the project brief).
TARGET_ADDED_P50_C1_MS = 0.6
TARGET_RPS_C32 = 2500.0
# "AI runtime depth" acceptance: added p50 <= 1 ms, p99 <= 5 ms at concurrency 32 (--open-rates)
TARGET_OPEN_ADDED_P50_MS = 1.0
TARGET_OPEN_ADDED_P99_MS = 5.0

DEFAULT_SCENARIOS = "chat:1,chat:32,stream:1,embed:32"
BASE = "runyard base"  # --with-base: the plain config measured in the same rounds as --features
TZ = "tensorzero"  # --with-tensorzero: TensorZero's Rust gateway (PyPI package), same rounds
GATEWAYS = ("runyard", BASE, TZ)
# The foundation's c=32 target is "half of TensorZero" (2,500 req/s where it served ~5,000):
# with --with-tensorzero it is also checked against TensorZero measured in the same rounds.
TARGET_TZ_SHARE_C32 = 0.5
RUNYARD_TARGETS = ("runyard", BASE)  # the gateways whose recorder is watched


def tz_config(mock_url: str) -> str:
    """TensorZero's config (as run_peers.sh writes it): mock-gpt and mock-embed on the mock upstream."""
    out = ["[gateway]\nobservability.enabled = false\n"]
    for table, name in (("models", "mock-gpt"), ("embedding_models", "mock-embed")):
        out.append(
            f'\n[{table}.{name}]\nrouting = ["mock"]\n\n[{table}.{name}.providers.mock]\ntype = "openai"\n'
            f'model_name = "{name}"\napi_base = "{mock_url}/"\napi_key_location = "none"\n'
        )
    return "".join(out)


# --------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[overhead {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_shared_bench(arg: str | None) -> Path:
    cand = arg or os.environ.get("SHARED_BENCH") or str(REPO.parent / "shared" / "bench")
    p = Path(cand).expanduser().resolve()
    for f in ("loadgen.py", "mock_upstream.py"):
        if not (p / f).is_file():
            raise SystemExit(f"overhead: {p / f} not found (use --shared-bench DIR or SHARED_BENCH)")
    return p


def children_of(pid: int) -> list[int]:
    """Direct and indirect children of pid, found via /proc (deepest last)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                s = fh.read()
            ppid = int(s[s.rfind(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for k in kids.get(p, []):
            out.append(k)
            todo.append(k)
    return out


class Procs:
    """The servers this script started; stopped by PID (children first found via /proc)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], logfile: Path) -> subprocess.Popen[bytes]:
        fh = open(logfile, "wb")
        # own session: a Ctrl-C in the terminal reaches us only; we stop the servers in order
        p = subprocess.Popen(
            cmd,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(REPO),
        )
        fh.close()
        self.started.append((name, p))
        return p

    def stop_all(self) -> None:
        for name, p in reversed(self.started):
            if p.poll() is not None:
                continue
            kids = children_of(p.pid)
            for pid in [p.pid, *kids]:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=12)
            except subprocess.TimeoutExpired:
                log(f"{name} pid={p.pid} did not stop on SIGTERM; SIGKILL")
                for pid in [p.pid, *kids]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                p.wait(timeout=5)
        self.started.clear()


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float, logfile: Path) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            tail = logfile.read_text(errors="replace")[-3000:]
            raise SystemExit(f"overhead: process exited with {proc.returncode} before {url} answered:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if 200 <= r.status < 300:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"overhead: timeout waiting for {url} (see {logfile})")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def g(d, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def fmt(x, nd=3):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.{nd}f}"


def signed(x, nd=3):
    return "–" if x is None else ("+" if x >= 0 else "") + fmt(x, nd)


# --------------------------------------------------------------------------- load runs
def run_load(
    py: str,
    shared: Path,
    a,
    base_url: str,
    mode: str,
    c: int,
    pid: int,
    label: str,
    rnd: int,
    out: Path,
    duration: float,
    warmup: float,
    kind: str = "gateway",
    extra: list[str] | None = None,
) -> dict | None:
    model = target_model(label, mode)
    cmd = [
        py,
        str(shared / "loadgen.py"),
        "--base-url",
        base_url,
        "--mode",
        mode,
        "--model",
        model,
        "-c",
        str(c),
        "-d",
        str(duration),
        "--warmup",
        str(warmup),
        "--pids",
        str(pid),
        "--label",
        label,
        "--tag",
        f"target={label}",
        "--tag",
        f"round={rnd}",
        "--tag",
        f"kind={kind}",
        "--settle",
        "10",
    ]
    if a.engine != "auto":
        cmd += ["--engine", "py" if mode == "stream" else a.engine]
    cmd += extra or []
    t_limit = duration + warmup + 120
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = p.communicate(timeout=t_limit)
    except BaseException as err:  # timeout, Ctrl-C, SIGTERM: stop loadgen and its wrk by PID
        kids = children_of(p.pid)
        try:  # SIGINT first: loadgen then stops wrk and removes its temp dir itself
            p.send_signal(signal.SIGINT)
            p.wait(timeout=3)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        for pid in [*kids, p.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait()
        if isinstance(err, subprocess.TimeoutExpired):
            log(f"  FAILED (timeout): {label} {mode} c={c}")
            return None
        raise
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("{")), None)
    if p.returncode != 0 or line is None:
        log(f"  FAILED (rc={p.returncode}): {label} {mode} c={c}: {(stderr or stdout)[-600:]}")
        return None
    rec = json.loads(line)
    with open(out, "a") as fh:
        fh.write(line + "\n")
    return rec


def target_model(label: str, mode: str) -> str:
    """The bench models' names; TensorZero addresses them by kind (``tensorzero::model_name::...``)."""
    model = "mock-embed" if mode == "embed" else "mock-gpt"
    if label == TZ:
        return f"tensorzero::{'embedding_model_name' if mode == 'embed' else 'model_name'}::{model}"
    return model


def agg(recs: list[dict]) -> dict:
    return {
        "n": len(recs),
        "rps": med([r.get("rps") for r in recs]),
        "p50": med([g(r, "lat_ms", "p50") for r in recs]),
        "p99": med([g(r, "lat_ms", "p99") for r in recs]),
        "t50": med([g(r, "ttfb_ms", "p50") for r in recs]),
        "t99": med([g(r, "ttfb_ms", "p99") for r in recs]),
        "cpu": med([g(r, "procs", "cpu_ms_per_req") for r in recs]),
        "util": med([g(r, "procs", "cpu_util") for r in recs]),
        "rss": max([g(r, "procs", "rss_mb") or 0 for r in recs] or [0]) or None,
        "errors": sum(sum((r.get("errors") or {}).values()) for r in recs),
        "engine": ",".join(sorted({r.get("engine", "?") for r in recs})),
        "rps_all": [r.get("rps") for r in recs],
        "backlog": [(r.get("recorder") or {}).get("buffered") for r in recs if r.get("recorder")],
        "dropped": max([(r.get("recorder") or {}).get("dropped") or 0 for r in recs] or [0]),
        "p50_all": [g(r, "lat_ms", "p50") for r in recs],
    }


def _rates(text: str) -> list[float]:
    """``--open-rates``: comma-separated positive req/s."""
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be > 0")
    return rates


def run_open(py: str, shared: Path, a, base_url: str, rate: float, extra: list[str] | None, label: str) -> dict | None:
    """One open-loop run (bench/openloop.py): chat at ``rate`` req/s over 32 connections."""
    cmd = [py, str(REPO / "bench" / "openloop.py"), "--base-url", base_url, "--rate", str(rate)]
    cmd += ["--model", target_model(label, "chat")]
    cmd += ["-c", "32", "-d", str(a.duration), "--warmup", str(a.warmup), "--shared-bench", str(shared)]
    p = subprocess.run(cmd + (extra or []), capture_output=True, text=True, timeout=a.duration + a.warmup + 60)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        log(f"openloop failed (rc={p.returncode}): {p.stderr.strip()[-400:]}")
        return None
    return json.loads(lines[-1])


def open_report(results: dict[tuple[float, str], list[dict]], rates: list[float], rounds: int) -> list[str]:
    """Added latency at 32 connections below saturation: gateway minus direct, medians over rounds."""
    out = ["", f"## Open loop: 32 connections at a fixed rate (median of {rounds} round(s); latency ms)", ""]
    out += ["| rate req/s | target | achieved | p50 | p99 | added p50 | added p99 | late | errors |"]
    out += ["|---|---|---|---|---|---|---|---|---|"]
    checks = []
    for rate in rates:
        d = results.get((rate, "direct")) or []
        d50, d99 = med([g(r, "lat_ms", "p50") for r in d]), med([g(r, "lat_ms", "p99") for r in d])
        for name in ("direct", *GATEWAYS):
            recs = results.get((rate, name))
            if not recs:
                continue
            p50, p99 = med([g(r, "lat_ms", "p50") for r in recs]), med([g(r, "lat_ms", "p99") for r in recs])
            is_gw = name != "direct"
            add50 = p50 - d50 if is_gw and p50 is not None and d50 is not None else None
            add99 = p99 - d99 if is_gw and p99 is not None and d99 is not None else None
            out.append(
                f"| {rate:g} | {name} | {fmt(med([r.get('achieved_rps') for r in recs]), 1)} | {fmt(p50)} | "
                f"{fmt(p99)} | {signed(add50) if is_gw else '–'} | {signed(add99) if is_gw else '–'} | "
                f"{sum(r.get('late', 0) for r in recs)} | {sum(sum((r.get('errors') or {}).values()) for r in recs)} |"
            )
            if name == "runyard" and add50 is not None and add99 is not None:
                ok = add50 <= TARGET_OPEN_ADDED_P50_MS and add99 <= TARGET_OPEN_ADDED_P99_MS
                checks.append(
                    f"- {'PASS' if ok else 'MISS'}  open loop c=32 @{rate:g} req/s added p50 <= "
                    f"{TARGET_OPEN_ADDED_P50_MS:g} ms, p99 <= {TARGET_OPEN_ADDED_P99_MS:g} ms: "
                    f"{add50:+.3f} / {add99:+.3f} ms"
                )
    out += [
        "",
        "Latency counts from when each request was due (no coordinated omission); 'late' = requests "
        "that found all 32 connections busy.",
        "",
        *checks,
    ]
    return out


# --------------------------------------------------------------------------- report
def report(results: dict, scenarios: list[tuple[str, int]], rounds: int, duration: float) -> list[str]:
    out: list[str] = []
    w = out.append
    w("")
    w(f"## Runyard overhead vs direct-to-mock (median of {rounds} round(s) x {duration:g} s; latency ms)")
    w("")
    w(
        "| scenario | target | engine | req/s | p50 | p99 | added p50 | added p99 | req/s x | CPU ms/req | "
        "CPU util | 1-core cap req/s | RSS MB | errors |"
    )
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for sc in scenarios:
        d = results.get((sc, "direct"))
        for name, a in (("direct (mock)", d), *((g, results.get((sc, g))) for g in GATEWAYS)):
            if a is None:
                continue
            is_gw = name != "direct (mock)"
            add50 = a["p50"] - d["p50"] if is_gw and d and a["p50"] is not None and d["p50"] is not None else None
            add99 = a["p99"] - d["p99"] if is_gw and d and a["p99"] is not None and d["p99"] is not None else None
            x = (a["rps"] / d["rps"]) if is_gw and d and d["rps"] else None
            w(
                f"| {sc[0]} c={sc[1]} | {name} | {a['engine']} | {fmt(a['rps'], 1)} | {fmt(a['p50'])} | "
                f"{fmt(a['p99'])} | {signed(add50) if is_gw else '–'} | {signed(add99) if is_gw else '–'} | "
                f"{fmt(x, 3) if x else '–'} | {fmt(a['cpu'])} | {fmt(a['util'], 2)} | "
                f"{fmt(1000 / a['cpu'], 0) if a['cpu'] else '–'} | {fmt(a['rss'], 0)} | {a['errors']} |"
            )
    streams = [sc for sc in scenarios if sc[0] == "stream"]
    if streams:
        w("")
        w("Streams (py engine): time to first body byte (TTFB) and full stream")
        w("")
        w("| scenario | target | ttfb p50 | ttfb p99 | added ttfb p50 | added ttfb p99 | full p50 | full p99 |")
        w("|---|---|---|---|---|---|---|---|")
        for sc in streams:
            d = results.get((sc, "direct"))
            for name, a in (("direct (mock)", d), *((g, results.get((sc, g))) for g in GATEWAYS)):
                if a is None:
                    continue
                is_gw = name != "direct (mock)"
                at50 = a["t50"] - d["t50"] if is_gw and d and a["t50"] is not None and d["t50"] is not None else None
                at99 = a["t99"] - d["t99"] if is_gw and d and a["t99"] is not None and d["t99"] is not None else None
                w(
                    f"| {sc[0]} c={sc[1]} | {name} | {fmt(a['t50'])} | {fmt(a['t99'])} | "
                    f"{signed(at50) if is_gw else '–'} | {signed(at99) if is_gw else '–'} | "
                    f"{fmt(a['p50'])} | {fmt(a['p99'])} |"
                )
    w("")
    w(
        "CPU util = CPU seconds of the process / wall seconds. '1-core cap' = 1000 / CPU ms per request: the req/s "
        "one dedicated core would sustain at this cost (a CPU-bound server at c=32 should show util ~1.0)."
    )
    starved = [
        sc
        for sc in scenarios
        if sc[1] >= 8
        and (results.get((sc, "runyard")) or {}).get("util") is not None
        and results[(sc, "runyard")]["util"] < 0.85
    ]
    if starved:
        w(
            "WARNING: the gateway used < 0.85 of a core under load in "
            + ", ".join(f"{m} c={c}" for m, c in starved)
            + ": something else was using the CPUs (see the load average), so req/s and latency understate it."
        )
    for g in GATEWAYS:
        if not any((sc, g) in results for sc in scenarios):
            continue
        w("")
        w(
            f"Per round ({g}): "
            + "; ".join(
                f"{sc[0]} c={sc[1]} req/s {[round(x) for x in results[(sc, g)]['rps_all'] if x is not None]}"
                for sc in scenarios
                if (sc, g) in results
            )
        )
    backlog = [
        (sc, g, results[(sc, g)])
        for sc in scenarios
        for g in RUNYARD_TARGETS
        if results.get((sc, g), {}).get("backlog")
    ]
    if backlog:
        w("")
        w(
            "Inference recorder under load (largest backlog of rows not yet written, sampled every 0.25 s; a "
            "writer that keeps up holds well under a second of requests): "
            + "; ".join(
                f"{g} {sc[0]} c={sc[1]} max {max(r['backlog']):,}, dropped {r['dropped']:,}" for sc, g, r in backlog
            )
        )
    w("")
    w("## Targets")
    w("")
    checks = []
    c1, c1d = results.get((("chat", 1), "runyard")), results.get((("chat", 1), "direct"))
    if c1 and c1d and c1["p50"] is not None and c1d["p50"] is not None:
        added = c1["p50"] - c1d["p50"]
        checks.append(
            (f"chat c=1 added p50 <= {TARGET_ADDED_P50_C1_MS} ms", f"{added:+.3f} ms", added <= TARGET_ADDED_P50_C1_MS)
        )
    else:
        checks.append((f"chat c=1 added p50 <= {TARGET_ADDED_P50_C1_MS} ms", "not measured", None))
    c32 = results.get((("chat", 32), "runyard"))
    if c32 and c32["rps"] is not None:
        checks.append(
            (f"chat c=32 >= {TARGET_RPS_C32:,.0f} req/s", f"{c32['rps']:,.0f} req/s", c32["rps"] >= TARGET_RPS_C32)
        )
    else:
        checks.append((f"chat c=32 >= {TARGET_RPS_C32:,.0f} req/s", "not measured", None))
    tz32 = results.get((("chat", 32), TZ))
    if c32 and c32["rps"] is not None and tz32 and tz32["rps"]:
        share = c32["rps"] / tz32["rps"]
        checks.append(
            (
                f"chat c=32 >= {TARGET_TZ_SHARE_C32:.0%} of TensorZero's req/s (same rounds)",
                f"{c32['rps']:,.0f} / {tz32['rps']:,.0f} req/s = {share:.0%}",
                share >= TARGET_TZ_SHARE_C32,
            )
        )
    if c32 and c32.get("backlog") and c32["rps"]:
        worst = max(c32["backlog"])
        checks.append(
            (
                "chat c=32: the recorder keeps up (backlog < 1 s of requests, none dropped)",
                f"max backlog {worst:,} rows, {c32['dropped']:,} dropped",
                worst < c32["rps"] and not c32["dropped"],
            )
        )
    for name, value, ok in checks:
        w(f"- {'PASS' if ok else ('MISS' if ok is False else 'N/A ')}  {name}: {value}")
    return out


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of unrecorded load before each run")
    ap.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated mode:concurrency, modes chat|stream|embed (default {DEFAULT_SCENARIOS})",
    )
    ap.add_argument(
        "--engine",
        choices=["auto", "wrk", "py"],
        default="auto",
        help="loadgen engine for chat/embed (streams always use py)",
    )
    ap.add_argument(
        "--shared-bench",
        default=None,
        help="dir with loadgen.py and mock_upstream.py (default $SHARED_BENCH or <repo>/../shared/bench)",
    )
    ap.add_argument("--config", default=None, help="runyard config (default bench/runyard.toml)")
    ap.add_argument(
        "--features",
        action="store_true",
        help="routing + response cache + per-key limits on (bench/runyard-features.toml): chat and "
        "stream go to /v1/ai/chat with no model (task/prefer routing) and an API key on every request",
    )
    ap.add_argument(
        "--with-base",
        action="store_true",
        help="with --features: also run a gateway on bench/runyard.toml and measure it in the same rounds "
        "(order rotated), so the features' cost is read against a base taken in the same minutes",
    )
    ap.add_argument(
        "--metrics",
        action="store_true",
        help="[telemetry] metrics on (Prometheus counting on every request) against the same config with "
        "telemetry off, measured in the same rounds (as --with-base does for --features)",
    )
    ap.add_argument(
        "--tracing",
        action="store_true",
        help="[telemetry] OpenTelemetry traces on (sample_ratio 1, exported over OTLP/HTTP to a loopback sink) "
        "against the same config with telemetry off, in the same rounds; with --metrics: both on",
    )
    ap.add_argument(
        "--open-rates",
        type=_rates,
        default=[],
        help="comma-separated req/s: after the closed-loop rounds, chat at each fixed rate over 32 "
        "connections (bench/openloop.py) for every target, the added p50/p99 below saturation",
    )
    ap.add_argument(
        "--with-tensorzero",
        metavar="PYTHON",
        default=None,
        help="also run TensorZero's gateway (an interpreter with the PyPI 'tensorzero' package, e.g. "
        "run_peers.sh's venv: /tmp/benchvenv/bin/python) in the same rounds, as the c=32 target's reference",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="runyard serve --workers N (N > 1 puts the config's shared state on Redis: --redis)",
    )
    ap.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="add [redis] to the config (a fresh key prefix, deleted after): limits, cache and usage on "
        "Redis; Redis's own CPU per request is reported (default redis://127.0.0.1:6379/0 with --workers > 1)",
    )
    ap.add_argument(
        "--no-recording",
        action="store_true",
        help="the config with record_inferences = false: nothing filed, as TensorZero here (the harness runs "
        "it with observability.enabled = false); the like-for-like comparison, shown beside the default",
    )
    ap.add_argument("--python", default=sys.executable, help="interpreter for runyard, the mock and loadgen")
    ap.add_argument("--out", default=None, help="JSONL of raw loadgen lines (default in the temp dir)")
    ap.add_argument("--keep-db", action="store_true", help="keep the temporary SQLite store")
    ap.add_argument(
        "--pin",
        action="store_true",
        help="taskset: gateway on CPU 1, mock + load generator on CPU 0 (as run_peers.sh PIN=1)",
    )
    ap.add_argument(
        "--profile",
        metavar="FILE",
        default=None,
        help="after the rounds, py-spy record the gateway under --profile-load into FILE "
        "(speedscope JSON; py-spy must be installed next to --python or on PATH)",
    )
    ap.add_argument("--profile-duration", type=float, default=10.0)
    ap.add_argument(
        "--profile-load", default="chat:32", metavar="MODE:C", help="the load --profile records (default chat:32)"
    )
    a = ap.parse_args(argv)
    a.config = a.config or str(FEATURES_CONFIG if a.features else DEFAULT_CONFIG)
    telemetry_on = a.metrics or a.tracing
    if telemetry_on and a.features:
        ap.error("--metrics/--tracing measure the plain config; run --features separately")
    if a.with_base and not (a.features or telemetry_on):
        ap.error("--with-base goes with --features (--metrics/--tracing bring their own base)")
    a.with_base = a.with_base or telemetry_on
    if a.workers > 1 and a.redis is None:
        a.redis = "redis://127.0.0.1:6379/0"
    if a.with_tensorzero and not shutil.which(a.with_tensorzero):
        ap.error(f"--with-tensorzero: no interpreter at {a.with_tensorzero!r}")

    shared = find_shared_bench(a.shared_bench)
    scenarios: list[tuple[str, int]] = []
    for item in a.scenarios.split(","):
        mode, _, c = item.strip().partition(":")
        if mode not in ("chat", "stream", "embed") or not c.isdigit():
            raise SystemExit(f"overhead: bad scenario {item!r} (want mode:concurrency)")
        scenarios.append((mode, int(c)))
    a.duration = min(max(a.duration, 1.0), 120.0)
    py = a.python
    engine_note = "wrk" if shutil.which("wrk") else "py (wrk not installed: apt-get install -y wrk)"
    if a.engine != "auto":
        engine_note = a.engine

    work = Path(tempfile.mkdtemp(prefix="runyard-overhead-"))
    out = Path(a.out) if a.out else work / f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    db = work / "runyard.db"
    procs = Procs()

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    pin0 = ["taskset", "-c", "0"] if a.pin and shutil.which("taskset") else []
    pin1 = ["taskset", "-c", "1"] if a.pin and shutil.which("taskset") else []
    rc = 0
    base_config = DEFAULT_CONFIG
    sink = None
    redis_state: RedisState | None = None
    try:
        if telemetry_on:  # the measured gateway with telemetry on, the base with it off: same config else
            if a.tracing:
                sink = otlp_sink()
            a.config, base_config = telemetry_configs(Path(a.config), work, a.metrics, sink)
        if a.no_recording:  # the base too, so the features' cost is read on equal terms
            a.config = unrecorded_config(Path(a.config), work)
            base_config = Path(unrecorded_config(Path(base_config), work))
        if a.redis:
            redis_state = RedisState(a.redis)
            a.config = redis_state.config(Path(a.config), work)
        # ---- mock upstream
        mock_port = free_port()
        mock_log = work / "mock.log"
        mock = procs.start(
            "mock",
            [
                *pin0,
                py,
                str(shared / "mock_upstream.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(mock_port),
                "--server",
                "raw",
            ],
            dict(os.environ),
            mock_log,
        )
        mock_url = f"http://127.0.0.1:{mock_port}/v1"
        wait_ready(f"{mock_url}/models", mock, 30, mock_log)
        log(f"mock upstream pid={mock.pid} {mock_url}")

        # ---- runyard
        gw_port = free_port()
        gw_log = work / "runyard.log"
        env = dict(os.environ, MOCK_BASE_URL=mock_url, RUNYARD_BENCH_DB=str(db))
        gw = procs.start(
            "runyard",
            [*pin1, py, "-m", "runyard", "serve", "--config", a.config, "--host", "127.0.0.1", "--port", str(gw_port)]
            + (["--workers", str(a.workers)] if a.workers > 1 else []),
            env,
            gw_log,
        )
        gw_url = f"http://127.0.0.1:{gw_port}/v1"
        wait_ready(f"http://127.0.0.1:{gw_port}/healthz", gw, 90, gw_log)  # public: no key needed
        log(f"runyard pid={gw.pid} {gw_url} (store {db}, log {gw_log})")
        gateways = [("runyard", gw_url, gw)]
        if a.with_base:
            base_port = free_port()
            base_db, base_log = work / "runyard-base.db", work / "runyard-base.log"
            base_cmd = ["-m", "runyard", "serve", "--config", str(base_config), "--host", "127.0.0.1"]
            base = procs.start(
                BASE,
                [*pin1, py, *base_cmd, "--port", str(base_port)],
                dict(env, RUNYARD_BENCH_DB=str(base_db)),
                base_log,
            )
            wait_ready(f"http://127.0.0.1:{base_port}/healthz", base, 90, base_log)
            log(f"{BASE} pid={base.pid} (config {base_config}, store {base_db}, log {base_log})")
            gateways.append((BASE, f"http://127.0.0.1:{base_port}/v1", base))

        if a.with_tensorzero:
            tz_cfg, tz_url_file, tz_log = work / "tensorzero.toml", work / "tz.url", work / "tensorzero.log"
            tz_cfg.write_text(tz_config(mock_url))
            tz_cmd = [*pin1, a.with_tensorzero, str(shared / "tz_http_gateway.py"), "--config", str(tz_cfg)]
            tz = procs.start(TZ, [*tz_cmd, "--url-file", str(tz_url_file)], dict(os.environ), tz_log)
            end = time.monotonic() + 60
            while not (tz_url_file.is_file() and tz_url_file.read_text().strip()):
                if tz.poll() is not None or time.monotonic() > end:
                    tail = tz_log.read_text(errors="replace")[-2000:]
                    raise SystemExit(f"overhead: TensorZero did not start:\n{tail}")
                time.sleep(0.1)
            tz_url = tz_url_file.read_text().strip().rstrip("/")
            log(f"{TZ} pid={tz.pid} {tz_url} (log {tz_log})")
            gateways.append((TZ, tz_url, tz))

        if pin0:  # the load generator (and wrk under it) on CPU 0 too
            os.sched_setaffinity(0, {0})
        with open(out, "a") as fh:
            fh.write(
                json.dumps(
                    {
                        "kind": "meta",
                        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "python": sys.version.split()[0],
                        "cores": os.cpu_count(),
                        "duration_s": a.duration,
                        "rounds": a.rounds,
                        "pinned": bool(pin0),
                        "mock_server": "raw",
                        "mock_latency_ms": 0.0,
                        "versions": {},
                    }
                )
                + "\n"
            )

        load0 = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        targets = [("direct", mock_url, mock.pid), *((name, url, p.pid) for name, url, p in gateways)]
        # one short warm-up of each target (connection pools, lazy imports, SQLite WAL)
        bodies = features_bodies(work) if a.features else {}

        def gw_extra(mode: str) -> list[str] | None:
            """Routing + cache + limits: the native route with a routed body, and the API key."""
            if not a.features:
                return None
            args = ["--header", f"Authorization: Bearer {FEATURES_KEY}"]
            if mode in bodies:  # loadgen's precheck wants OpenAI's "choices": features_precheck checks instead
                args += ["--path", "/v1/ai/chat", "--body-file", str(bodies[mode]), "--no-precheck"]
            return args

        if a.features:
            log("features precheck: " + features_precheck(gw_url, bodies["chat"]))

        for name, url, pid in targets:
            for mode in sorted({m for m, _ in scenarios}):
                extra = gw_extra(mode) if name == "runyard" else None
                run_load(py, shared, a, url, mode, 4, pid, name, 0, work / "warm.jsonl", 1, 0, kind="warm", extra=extra)

        recs: dict[tuple[tuple[str, int], str], list[dict]] = {}
        attempted = failed = 0
        t_start = time.monotonic()
        for r in range(1, a.rounds + 1):
            for sc in scenarios:
                order = targets if r % 2 else targets[::-1]  # rotate the order every round
                for name, url, pid in order:
                    log(f"round {r}/{a.rounds}  {sc[0]} c={sc[1]}  -> {name}")
                    attempted += 1
                    extra = gw_extra(sc[0]) if name == "runyard" else None
                    watch = None
                    if name in RUNYARD_TARGETS:  # the recorder's backlog, sampled while under load
                        watch = RecorderWatch(url, FEATURES_KEY if a.features and name == "runyard" else None)
                    redis_before = redis_state.cpu_s() if redis_state and name == "runyard" else None
                    try:
                        rec = run_load(
                            py, shared, a, url, sc[0], sc[1], pid, name, r, out, a.duration, a.warmup, extra=extra
                        )
                    finally:
                        seen = watch.stop() if watch else None
                    if rec is not None and redis_state is not None and redis_before is not None:
                        redis_state.note(sc, rec, redis_state.cpu_s() - redis_before, a.duration + a.warmup)
                    if rec is None:
                        failed += 1
                        continue
                    if seen:
                        rec["recorder"] = seen
                    recs.setdefault((sc, name), []).append(rec)
                    for gname, _, proc in gateways:
                        if proc.poll() is not None:
                            raise SystemExit(f"overhead: {gname} exited ({proc.returncode}); see {work}")
        rates = a.open_rates
        opened: dict[tuple[float, str], list[dict]] = {}
        for r in range(1, a.rounds + 1):
            for rate in rates:
                for name, url, _pid in targets if r % 2 else targets[::-1]:
                    log(f"round {r}/{a.rounds}  open loop {rate:g} req/s c=32  -> {name}")
                    rec = run_open(py, shared, a, url, rate, gw_extra("chat") if name == "runyard" else None, name)
                    if rec is not None:
                        opened.setdefault((rate, name), []).append(rec)
        elapsed = time.monotonic() - t_start

        results = {k: agg(v) for k, v in recs.items()}
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        lines = [
            f"Runyard overhead benchmark, {time.strftime('%Y-%m-%d %H:%M')}: {os.cpu_count()} cores "
            f"(load average at start {load0}, at end {load}), "
            f"Python {sys.version.split()[0]}, load engine {engine_note}, pinned={bool(pin0)}, "
            f"{a.rounds} round(s) x {a.duration:g} s (+{a.warmup:g} s warm-up) in {elapsed / 60:.1f} min",
            f"mock {mock_url} (pid {mock.pid}), runyard {gw_url} (pid {gw.pid}), config {a.config}, "
            f"recording {'OFF' if a.no_recording else 'on'}, store {db}"
            + (
                ", FEATURES ON: task/prefer routing, runyard cache (every lookup misses), per-key limits"
                if a.features
                else ""
            )
            + (
                f", TELEMETRY ON: metrics {'on' if a.metrics else 'off'}, tracing {'on' if a.tracing else 'off'}"
                if telemetry_on
                else ""
            )
            + (f"; '{BASE}': {base_config.name}, same rounds" if a.with_base else ""),
        ]
        lines += report(results, scenarios, a.rounds, a.duration)
        if redis_state is not None:
            lines += redis_state.report(scenarios, a.workers)
        if rates:
            lines += open_report(opened, rates, a.rounds)
        print("\n".join(lines), flush=True)

        # recording check: the rows really reached the store
        try:
            import sqlite3

            time.sleep(0.5)
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            n = con.execute("select count(*) from inferences").fetchone()[0]
            con.close()
            print(f"\nInferences recorded in the store so far: {n:,} (buffered rows are flushed on shutdown)")
        except Exception as err:
            print(f"\n(could not count recorded inferences: {err})")
        print(f"Raw loadgen lines: {out}  (summarize: {shared / 'summarize.py'} {out})")

        if a.profile:
            profile(a, py, shared, gw, gw_url, work, gw_extra(a.profile_load.split(":")[0]) or [])

        if attempted and failed == attempted:
            rc = 1
    except KeyboardInterrupt:
        log("interrupted; stopping what was started")
        rc = 130
    finally:
        procs.stop_all()
        if sink is not None:
            sink.shutdown()
        if redis_state is not None:
            redis_state.clean()
        if not a.keep_db:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(str(db) + suffix)
                except FileNotFoundError:
                    pass
        log(f"logs: {work}")
    return rc


def unrecorded_config(config: Path, work: Path) -> str:
    """``--no-recording``: ``config`` with ``record_inferences = false``."""
    text = config.read_text()
    on = "record_inferences = true"
    if on not in text:
        raise SystemExit(f"overhead: {config} has no '{on}' line for --no-recording to turn off")
    out = work / f"{config.stem}-unrecorded.toml"
    out.write_text(text.replace(on, "record_inferences = false"))
    return str(out)


class RedisState:
    """``--redis``: the config with ``[redis]`` under a fresh prefix (its keys deleted after), and
    the Redis server's CPU during runyard's runs (INFO cpu), which the gateway's own CPU omits."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url)
        self.client.ping()
        self.prefix = f"runyard-bench:{os.getpid()}:{int(time.time())}:"
        self.per_req: dict[tuple[str, int], list[float]] = {}

    def config(self, config: Path, work: Path) -> str:
        text = config.read_text()
        if "[redis]" in text:
            raise SystemExit(f"overhead: {config} has its own [redis]; --redis sets it")
        out = work / f"{config.stem}-redis.toml"
        out.write_text(f'{text}\n[redis]\nurl = "{self.url}"\nprefix = "{self.prefix}"\n')
        return str(out)

    def cpu_s(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def note(self, sc: tuple[str, int], rec: dict, cpu_s: float, seconds: float) -> None:
        """Redis CPU over a run (warm-up included) per request at the run's rate."""
        rate = float(rec.get("rps") or 0)
        if rate > 0:
            self.per_req.setdefault(sc, []).append(cpu_s * 1000 / (rate * seconds))

    def report(self, scenarios: list[tuple[str, int]], workers: int) -> list[str]:
        lines = ["", f"Redis ({self.url}) CPU per runyard request, {workers} gateway process(es), median of rounds:"]
        for sc in scenarios:
            vals = sorted(self.per_req.get(sc, []))
            if vals:
                lines.append(f"- {sc[0]} c={sc[1]}: {vals[len(vals) // 2]:.3f} ms")
        return lines

    def clean(self) -> None:
        keys = list(self.client.scan_iter(match=self.prefix + "*", count=1000))
        for at in range(0, len(keys), 500):
            self.client.delete(*keys[at : at + 500])


def telemetry_configs(config: Path, work: Path, metrics: bool, sink: Any) -> tuple[str, Path]:
    """(the measured config: ``config`` with [telemetry] on as asked, its base: telemetry off)."""
    text = config.read_text()
    if "[telemetry]" in text:
        raise SystemExit(f"overhead: {config} has its own [telemetry]; --metrics/--tracing set it")
    on = f"\n[telemetry]\nmetrics = {'true' if metrics else 'false'}\n"
    if sink is not None:
        on += f'otlp_endpoint = "http://127.0.0.1:{sink.server_address[1]}"\nsample_ratio = 1.0\n'
    measured, base = work / "runyard-telemetry-on.toml", work / "runyard-telemetry-off.toml"
    measured.write_text(text + on)
    base.write_text(text + "\n[telemetry]\nmetrics = false\n")
    return str(measured), base


def otlp_sink() -> Any:
    """A loopback OTLP/HTTP endpoint that takes every export (200, empty body) and keeps nothing."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def features_bodies(work: Path) -> dict[str, Path]:
    """Request bodies for --features: no model (task/prefer routing), the runyard cache asked for."""
    base = {
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
        "task": "general",
        "prefer": "cheapest",
        "cache_strategy": "runyard",
    }
    out = {}
    for mode, extra in (("chat", {}), ("stream", {"stream": True})):
        path = work / f"features-{mode}.json"
        path.write_text(json.dumps({**base, **extra}))
        out[mode] = path
    return out


def features_precheck(gw_url: str, body: Path) -> str:
    """One routed chat with the key: 200, a routing reason, the limit headers, the cache asked for."""
    req = urllib.request.Request(
        gw_url + "/ai/chat",
        data=body.read_bytes(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {FEATURES_KEY}"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        data = json.loads(r.read())
        limit = r.headers.get("X-RateLimit-Limit")
    meta = data.get("_metadata") or {}
    if not meta.get("route_reason") or limit is None:
        raise SystemExit(f"overhead: --features precheck failed: {data!r}, X-RateLimit-Limit={limit}")
    return f"routed to {data.get('model')} ({meta['route_reason']}); X-RateLimit-Limit {limit}"


class RecorderWatch:
    """Samples the gateway's inference recorder (``/v1/status``: rows buffered, written, dropped)
    every ``every_s`` in a thread while a load runs; :meth:`stop` gives the largest backlog seen
    and the dropped count at the end."""

    def __init__(self, gw_url: str, key: str | None, every_s: float = 0.25) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.request = urllib.request.Request(gw_url + "/status", headers=headers)
        self.every_s = every_s
        self.buffered: list[int] = []
        self.dropped = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        try:
            with urllib.request.urlopen(self.request, timeout=10) as r:
                stats = json.loads(r.read()).get("recorder") or {}
        except (urllib.error.URLError, OSError, ValueError):
            return
        if "buffered" in stats:
            self.buffered.append(int(stats["buffered"]))
            self.dropped = int(stats.get("dropped") or 0)

    def _run(self) -> None:
        while not self.done.wait(self.every_s):
            self._sample()

    def stop(self) -> dict | None:
        self.done.set()
        self.thread.join()
        self._sample()
        return {"buffered": max(self.buffered), "dropped": self.dropped} if self.buffered else None


def profile(a, py: str, shared: Path, gw: subprocess.Popen[bytes], gw_url: str, work: Path, extra: list[str]) -> None:
    """py-spy record the gateway while loadgen drives ``--profile-load`` (with --features' key and body)."""
    spy = shutil.which("py-spy", path=str(Path(py).parent)) or shutil.which("py-spy")
    if not spy:
        log("py-spy not found (pip install py-spy); skipping --profile")
        return
    dur = max(2.0, a.profile_duration)
    mode, _, clients = a.profile_load.partition(":")
    load = subprocess.Popen(
        [
            py,
            str(shared / "loadgen.py"),
            "--base-url",
            gw_url,
            "--mode",
            mode,
            "--model",
            target_model("runyard", mode),
            "-c",
            clients or "32",
            "-d",
            str(dur + 3),
            "--warmup",
            "0",
            "--settle",
            "0",
            "--no-precheck",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.5)
        log(f"py-spy record {dur:g} s of runyard pid={gw.pid} -> {a.profile}")
        subprocess.run(
            [
                spy,
                "record",
                "--pid",
                str(gw.pid),
                "-d",
                str(int(dur)),
                "-r",
                "250",
                "--format",
                "speedscope",
                "-o",
                a.profile,
                "--nonblocking",
            ],
            timeout=dur + 60,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        load.wait(timeout=dur + 60)
    finally:
        if load.poll() is None:
            load.terminate()
            load.wait(timeout=10)
    print(f"Profile: {a.profile} (open in https://speedscope.app, or summarize with bench/profile_top.py)")


if __name__ == "__main__":
    sys.exit(main())
