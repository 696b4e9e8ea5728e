#!/usr/bin/env python3
"""Top frames of a py-spy speedscope profile (``py-spy record --format speedscope``).

    python bench/profile_top.py PROFILE.json [-n 30] [--filter runyard] [--by function|file]

Prints, for the busiest thread (or all with --all-threads):
  self %       share of samples where the frame is on top of the stack
  inclusive %  share of samples where the frame is anywhere on the stack (counted once per sample)
and, with --filter, the same restricted to frames whose file contains the text.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter


def short(frame: dict, by: str) -> str:
    f = frame.get("file") or ""
    for marker in ("site-packages/", "/src/", "lib/python3"):
        i = f.find(marker)
        if i >= 0:
            f = f[i + len(marker) :]
            break
    if by == "file":
        return f
    if by == "package":
        if f.startswith("runyard/"):
            return "/".join(f.split("/")[:2])  # runyard/<module>
        if f.startswith("<frozen") or "/" not in f:
            return "stdlib:" + f.split("/")[0] if f.endswith(".py") and "/" not in f else f or "?"
        top = f.split("/")[0]
        return "stdlib:" + top if top == ".11" or top.startswith(".") else top
    line = frame.get("line")
    return f"{frame.get('name')} ({f}{':' + str(line) if line and by == 'line' else ''})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile")
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--filter", action="append", default=[], help="only frames whose file contains this")
    ap.add_argument(
        "--by",
        choices=["function", "line", "file", "package"],
        default="function",
        help="group frames by function (default), source line, file, or top-level package",
    )
    ap.add_argument("--all-threads", action="store_true")
    a = ap.parse_args()

    with open(a.profile) as fh:
        doc = json.load(fh)
    frames = doc["shared"]["frames"]
    profiles = doc["profiles"]
    if not a.all_threads:
        profiles = [max(profiles, key=lambda p: sum(p.get("weights") or [1] * len(p["samples"])))]
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    total = 0.0
    nsamples = 0
    for p in profiles:
        nsamples += len(p["samples"])
        weights = p.get("weights") or [1] * len(p["samples"])
        for stack, w in zip(p["samples"], weights, strict=False):
            total += w
            if not stack:
                continue
            names = [short(frames[i], a.by) for i in stack]
            self_c[names[-1]] += w
            for n in set(names):
                incl_c[n] += w
    unit = profiles[0].get("unit", "")
    print(
        f"{os.path.basename(a.profile)}: {len(profiles)} thread(s), {nsamples} samples = {total:.2f} {unit} "
        f"({', '.join(p.get('name', '?') for p in profiles)})"
    )
    print("note: with asyncio, py-spy often roots a coroutine's stack at the coroutine itself, so the")
    print("inclusive shares undercount outer frames; the self shares are exact.")

    def show(title: str, counter: Counter[str], keep) -> None:
        print(f"\n{title}")
        rows = [(k, v) for k, v in counter.most_common() if keep(k)][: a.n]
        for k, v in rows:
            print(f"  {100 * v / total:6.2f}%  {k}")

    show("self (top of stack):", self_c, lambda k: True)
    show("inclusive:", incl_c, lambda k: True)
    for flt in a.filter:
        show(f"self, frames matching {flt!r}:", self_c, lambda k, flt=flt: flt in k)
        show(f"inclusive, frames matching {flt!r}:", incl_c, lambda k, flt=flt: flt in k)


if __name__ == "__main__":
    main()
