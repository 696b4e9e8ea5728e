"""The reference docs' examples (``examples/<system>/``), run as scripts against ``runyard serve``.

Each folder holds a system's doc examples as written (with Runyard's names where the doc names
its own package: ``from runyard import ai`` for Infrai) and the ``runyard.toml`` they need. The
gateway's upstream is a loopback OpenAI-compatible server; URLs that point at the public internet
in the docs are replaced, in a temporary copy of each script, with loopback ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.gateway import GatewayProcess
from support.media_upstream import ThreadedUpstream

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# script -> lines its output must contain
INFRAI = {
    "chat.py": ["vendor: openai | model: "],
    "chat_stream.py": ["a raccoon"],
    "chat_stream_result.py": ["a raccoon", "request_id: ", "vendor: openai"],
    "embed.py": ["dimensions: 3"],
    "image.py": ["first url: https://img.example/1.png"],
    "vision.py": ["a raccoon"],
    "tts.py": ["audio url: http://127.0.0.1:"],
    "asr.py": ["transcript: hello world"],
    "realtime_token.py": ["session: sess_1 | expires: 1900000000"],
}
TENSORZERO = {
    "inference_sync.py": ["ChatInferenceResponse(", "a raccoon"],
    "inference_async.py": ["ChatInferenceResponse(", "a raccoon"],
    "stream_sync.py": ["ChatChunk(", "raccoon"],
    "stream_async.py": ["ChatChunk(", "raccoon"],
    "feedback_sync.py": ["FeedbackResponse(feedback_id="],
    "feedback_async.py": ["FeedbackResponse(feedback_id="],
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedUpstream]:
    server = ThreadedUpstream().start()
    try:
        yield server
    finally:
        server.stop()


def _serve(system: str, tmp: Path, upstream: ThreadedUpstream) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    folder = tmp / system
    shutil.copytree(EXAMPLES / system, folder)
    env = {
        "OPENAI_BASE_URL": upstream.url + "/v1",
        "OPENAI_API_KEY": "sk-example",
        "RUNYARD_DATA": str(folder),
    }
    env.pop("RUNYARD_BASE_URL", None)
    server = GatewayProcess(folder / "runyard.toml", env={**env, "ANTHROPIC_API_KEY": ""}).start()
    try:
        yield server, env
    finally:
        server.stop()


@pytest.fixture(scope="module")
def infrai(
    tmp_path_factory: pytest.TempPathFactory, upstream: ThreadedUpstream
) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    yield from _serve("infrai", tmp_path_factory.mktemp("examples"), upstream)


@pytest.fixture(scope="module")
def tensorzero(
    tmp_path_factory: pytest.TempPathFactory, upstream: ThreadedUpstream
) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    yield from _serve("tensorzero", tmp_path_factory.mktemp("examples"), upstream)


# tensorzero 2026.6.0's async client (Rust, pyo3) can crash while the interpreter shuts down,
# after the script has run to its end: SIGSEGV, or SIGABRT with "PyGILState_Release: thread state
# must be current ... runtime state: finalizing" (reproduced with the gateway unreachable, so not
# Runyard's doing). Its output is still checked in full.
CLIENT_EXIT_CRASHES = {-11, -6}


def _run(script: Path, tmp: Path, replace: dict[str, str], env: dict[str, str], *, exit_crash_ok: bool = False) -> str:
    text = script.read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    copy = tmp / script.name
    copy.write_text(text)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    out = subprocess.run(
        [sys.executable, str(copy)], env={**full_env, **env}, capture_output=True, text=True, timeout=90, cwd=tmp
    )
    ok = {0, *CLIENT_EXIT_CRASHES} if exit_crash_ok else {0}
    assert out.returncode in ok, f"{script.name} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_every_example_is_listed() -> None:
    assert {p.name for p in (EXAMPLES / "infrai").glob("*.py")} == set(INFRAI)
    assert {p.name for p in (EXAMPLES / "tensorzero").glob("*.py")} == set(TENSORZERO)


@pytest.mark.parametrize("script", sorted(INFRAI))
def test_infrai_example(
    script: str, infrai: tuple[GatewayProcess, dict[str, str]], upstream: ThreadedUpstream, tmp_path: Path
) -> None:
    server, env = infrai
    replace = {"https://example.com/clip.mp3": upstream.url + "/clip.wav"}
    out = _run(EXAMPLES / "infrai" / script, tmp_path, replace, {**env, "RUNYARD_BASE_URL": server.url})
    for expected in INFRAI[script]:
        assert expected in out, out


@pytest.mark.parametrize("script", sorted(TENSORZERO))
def test_tensorzero_example(script: str, tensorzero: tuple[GatewayProcess, dict[str, str]], tmp_path: Path) -> None:
    server, env = tensorzero
    replace = {"http://localhost:3000": server.url}
    out = _run(EXAMPLES / "tensorzero" / script, tmp_path, replace, env, exit_crash_ok="async" in script)
    for expected in TENSORZERO[script]:
        assert expected in out, out
