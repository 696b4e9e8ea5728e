"""Several processes starting on one fresh SQLite file migrate it once, without racing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio, sys
from runyard.backends.store import Store

async def main():
    store = Store(sys.argv[1])
    await store.start()
    print(await store.count_inferences())
    await store.aclose()

asyncio.run(main())
"""


def test_concurrent_starts_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'runyard.db'}"
    procs = [
        subprocess.Popen([sys.executable, "-c", SCRIPT, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
        assert out.strip() == b"0"
