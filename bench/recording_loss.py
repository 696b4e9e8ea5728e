#!/usr/bin/env python3
"""The ``recording = "async"`` loss window, measured (not a test): chat at concurrency 32 into
one ``runyard serve`` on Postgres, SIGKILL it mid-load, then count the answered inferences that
have no row.

    .venv/bin/python bench/recording_loss.py [--seconds 5] [--recording async|sync] \
        [--postgres postgresql+asyncpg://postgres@127.0.0.1/postgres]

Prints answers received, rows written and lost ones (``sync`` must print 0 lost), with the
config's ``flush_interval_ms`` (default 200 ms): the window is about one flush interval of answers.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from scale import CHAT, _database, _serve

from runyard.backends.store import Store


async def _answers(url: str, seconds: float, concurrency: int) -> int:
    answered = 0
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one() -> None:
            nonlocal answered
            while time.monotonic() < stop:
                if (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200:
                    answered += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return answered


async def _rows(url: str) -> int:
    store = Store(url)
    try:
        return await store.count_inferences()
    finally:
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--recording", choices=["async", "sync"], default="async")
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1/postgres")
    args = parser.parse_args()
    name = f"runyard_loss_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(_database(args.postgres, name, create=True))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "runyard.toml"
            config.write_text(f'[storage]\nurl = "{url}"\nrecording = "{args.recording}"\n')
            proc = _serve(config, 19000 + uuid.uuid4().int % 500, 1)
            port = proc.args[proc.args.index("--port") + 1]  # type: ignore[union-attr]
            answered = asyncio.run(_answers(f"http://127.0.0.1:{port}", args.seconds, args.concurrency))
            proc.send_signal(signal.SIGKILL)  # right after the last answer: no shutdown, no drain
            proc.wait(timeout=10)
        rows = asyncio.run(_rows(url))
        print(f"recording={args.recording}: {answered} answered, {rows} rows, {max(answered - rows, 0)} lost")
    finally:
        asyncio.run(_database(args.postgres, name, create=False))


if __name__ == "__main__":
    main()
