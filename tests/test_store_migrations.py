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


def test_the_shipped_heads_are_alembics() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from runyard.backends.store import MIGRATIONS_DIR, shipped_heads

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert shipped_heads() == set(ScriptDirectory.from_config(config).get_heads())


START_TWICE = """
import asyncio, sys
from runyard.backends.store import Store

async def start():
    store = Store(sys.argv[1])
    await store.start()
    ready = await store.at_head()
    await store.aclose()
    return ready

print(asyncio.run(start()), "alembic" in sys.modules, sep=",")
"""


def test_a_start_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    """The first start migrates (unless the scale-out run gave this file a migrated Postgres
    stand-in); the second finds the head and leaves Alembic unimported."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'runyard.db'}"
    runs = [subprocess.run([sys.executable, "-c", START_TWICE, url], capture_output=True, text=True) for _ in range(2)]
    first, second = (run.stdout.strip() for run in runs)
    assert first in ("True,True", "True,False") and second == "True,False", [run.stderr for run in runs]
