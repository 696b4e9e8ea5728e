"""README.md's code blocks run as written, so the README cannot rot.

The convention (for whoever edits README.md): the line right before a fence may hold an HTML comment.
- ``<!-- fragment: why -->``: not run (set-up steps, a server that runs until stopped, calls needing keys).
- ``<!-- file: examples/PATH -->``: the block is a file's text, and must appear verbatim in that file.
Otherwise, by the fence's language:
- ``python``: run with ``python -c`` in a copy of ``examples/``, with ``RUNYARD_BASE_URL`` pointing at
  ``runyard serve`` started there (dummy and local models only: no keys, no network); must exit 0.
- ``bash``: run with ``bash -e -o pipefail`` the same way (``runyard`` on the PATH); must exit 0.
- ``toml``: must be a valid config (``parse_config``, with ``${VAR:-default}`` expanded).
- no language: not code (the layout tree); any other language fails this test until it is given a rule.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from runyard.config import parse_config
from support.gateway import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"(?:^<!--(?P<note>.*?)-->\n)?^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    body: str
    note: str

    @property
    def kind(self) -> str:
        if self.note.startswith("fragment"):
            return "fragment"
        if self.note.startswith("file:"):
            return "file"
        return {"python": "run", "bash": "run", "toml": "config", "": "text"}.get(self.lang, "unknown")

    def __str__(self) -> str:
        return f"L{self.line}-{self.lang or 'text'}-{self.kind}"


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [
        Block(text.count("\n", 0, m.start("body")), m["lang"], m["body"], (m["note"] or "").strip())
        for m in FENCE.finditer(text)
    ]


BLOCKS = readme_blocks()


def test_block_census(capsys: pytest.CaptureFixture[str]) -> None:
    kinds = [b.kind for b in BLOCKS]
    counts = {k: kinds.count(k) for k in ("run", "file", "config", "fragment", "text")}
    with capsys.disabled():
        print(
            f"\nREADME.md: {len(BLOCKS)} code blocks: {counts['run']} run, {counts['file']} checked against "
            f"examples/, {counts['config']} configs parsed, {counts['fragment']} fragments, {counts['text']} text"
        )
    assert "unknown" not in kinds, [str(b) for b in BLOCKS if b.kind == "unknown"]
    assert counts["run"] >= 6 and counts["file"] >= 3  # the newcomer's path stays runnable


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/ and a ``runyard`` command on the PATH (this interpreter, this source)."""
    root = tmp_path_factory.mktemp("readme") / "examples"
    shutil.copytree(ROOT / "examples", root, ignore=shutil.ignore_patterns("__pycache__", ".runyard"))
    bin_dir = root.parent / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "runyard"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m runyard "$@"\n')
    shim.chmod(0o755)
    return root


def block_env(workdir: Path, base_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env["PATH"] = f"{workdir.parent / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT / "src")
    env["COLUMNS"] = "120"
    if base_url:
        env["RUNYARD_BASE_URL"] = base_url
    return env


@pytest.fixture(scope="module")
def gateway_url(workdir: Path) -> Iterator[str]:
    """``runyard serve`` in the examples' folder, as the README says to start it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir.parent / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runyard", "serve", "--port", str(port)],
        cwd=workdir,
        env=block_env(workdir),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (workdir.parent / "serve.log").read_text()
            assert time.monotonic() < deadline, "runyard serve did not become ready"
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "run"], ids=str)
def test_runnable_block(block: Block, workdir: Path, gateway_url: str) -> None:
    command = [sys.executable, "-c", block.body] if block.lang == "python" else ["bash", "-e", "-o", "pipefail", "-c"]
    if block.lang == "bash":
        command.append(block.body)
    out = subprocess.run(
        command, cwd=workdir, env=block_env(workdir, gateway_url), capture_output=True, text=True, timeout=180
    )
    where = f"README.md line {block.line}:\n{block.body}"
    assert out.returncode == 0, f"{where}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    assert "Traceback" not in out.stderr and "was destroyed but it is pending" not in out.stderr, out.stderr


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "file"], ids=str)
def test_file_block(block: Block) -> None:
    path = block.note.removeprefix("file:").strip()
    assert path.startswith("examples/"), f"README.md line {block.line}: files live under examples/"
    assert block.body in (ROOT / path).read_text(), f"README.md line {block.line} differs from {path}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "config"], ids=str)
def test_config_block(block: Block) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    parse_config(tomllib.loads(block.body), f"README.md line {block.line}")
