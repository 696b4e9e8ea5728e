"""What a process loads is what it uses: every ``runyard`` command builds the CLI's parser (and
``serve --workers``' supervisor does nothing more), so the parser leaves the store, the web
framework and the HTTP client unloaded; a gateway loads httpx only when something fetches a URL.
Each check runs in a fresh interpreter, since this test process has imported everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("sqlalchemy", "starlette", "httpx", "uvloop", "aiohttp")

LOADED = """
import json, sys
{body}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _loaded(body: str, cwd: Path) -> list[str]:
    code = LOADED.format(body=body, heavy=HEAVY)
    # without the scale-out run's start-up hook (PYTHONPATH), which imports SQLAlchemy everywhere
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("RUNYARD_TEST_")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    assert run.returncode == 0, run.stderr
    loaded: list[str] = json.loads(run.stdout.strip().splitlines()[-1])
    return loaded


def test_the_cli_parser_loads_no_store_framework_or_http_client(tmp_path: Path) -> None:
    assert _loaded("from runyard.cli import build_parser\nbuild_parser()", tmp_path) == []


def test_a_gateway_loads_httpx_only_to_fetch(tmp_path: Path) -> None:
    body = (
        "from runyard.config import RunyardConfig\n"
        "from runyard.server.app import create_app\n"
        "create_app(RunyardConfig())"
    )
    assert _loaded(body, tmp_path) == ["sqlalchemy", "starlette"]
