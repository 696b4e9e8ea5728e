"""``GET /v1/inferences`` (and ``runyard inferences ls``) over a real ``runyard serve`` with keys on: a
store key lists its own workspace's inferences only; the operator's config key lists all; no key, 401."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.gateway import GatewayProcess
from test_limits import ADMIN_KEY, add_key, config_toml


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("inferences")
    path = root / "runyard.toml"
    path.write_text(config_toml(root / "runyard.db"))
    keys = {name: add_key(path, name, workspace=ws)[1] for name, ws in (("a", "acme"), ("b", "other"))}
    keys["admin"] = ADMIN_KEY
    process = GatewayProcess(path).start()
    try:
        yield process.url, keys
    finally:
        process.stop()


def chat(url: str, key: str, text: str) -> str:
    r = httpx.post(
        f"{url}/v1/ai/chat",
        json={"model": "dummy::echo", "messages": [{"role": "user", "content": text}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    inference_id: str = r.json()["inference_id"]
    return inference_id


def listed(url: str, key: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{url}/v1/inferences", params=params, headers=headers)


def test_listing_is_confined_to_the_callers_workspace(served: tuple[str, dict[str, str]]) -> None:
    url, keys = served
    mine = {chat(url, keys["a"], "from a"), chat(url, keys["a"], "again a")}
    theirs = {chat(url, keys["b"], "from b")}
    seen = {name: {row["id"] for row in listed(url, keys[name], limit="200").json()["data"]} for name in keys}
    assert seen["a"] == mine and seen["b"] == theirs and seen["admin"] >= mine | theirs
    assert listed(url, None).status_code == 401
    bad = listed(url, keys["a"], limit="0")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_limit"

    env = {**os.environ, "RUNYARD_API_KEY": keys["b"], "COLUMNS": "80"}
    out = subprocess.run(
        [sys.executable, "-m", "runyard", "inferences", "ls", "--json", "--base-url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert {row["id"] for row in json.loads(out.stdout)["data"]} == theirs


def test_a_wrong_key_is_one_line(served: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, _ = served
    env = {**os.environ, "RUNYARD_API_KEY": "ry_not_a_key"}
    out = subprocess.run(
        [sys.executable, "-m", "runyard", "inferences", "ls", "--base-url", url],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("runyard: ") and "401" not in out.stdout
