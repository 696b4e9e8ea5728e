"""Pieces of the task machinery that need no server: URL guard, version order, app signatures,
and the webhook guard's default refusal through an embedded gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import BaseModel

import runyard
from runyard import InvalidRequestError
from runyard.apps import AppContext, definition_of, version_key
from runyard.services.urlguard import UnsafeURLError, check_url, is_public_address
from support.tasks_e2e import embedded_client


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
    ],
)
def test_url_guard_refuses_non_public(url: str) -> None:
    with pytest.raises(UnsafeURLError) as caught:
        asyncio.run(check_url(url))
    assert caught.value.code == "url_not_allowed"
    assert asyncio.run(check_url(url, allow_private=True)) == url


def test_url_guard_rules() -> None:
    assert is_public_address("8.8.8.8") and is_public_address("2606:4700::1111")
    assert not is_public_address("100.64.0.1")  # carrier-grade NAT
    for bad in ("ftp://example.com/x", "http:///nohost", "file:///etc/passwd"):
        with pytest.raises(UnsafeURLError) as caught:
            asyncio.run(check_url(bad))
        assert caught.value.code == "invalid_url"


def test_webhook_to_private_address_refused_by_default(tasks_config_path: Path, tmp_path: Path) -> None:
    client = embedded_client(tasks_config_path, tmp_path, webhooks={"allow_private_webhooks": False})
    with client:
        for url in ("http://127.0.0.1:9/hook", "http://10.0.0.7/hook"):
            with pytest.raises(InvalidRequestError) as caught:
                client.run("tests/echo", {"text": "x"}, webhook=url)
            assert caught.value.code == "url_not_allowed" and caught.value.status == 400
        assert client.tasks.list().data == [], "a refused run creates no task"


def test_semver_ordering() -> None:
    versions = ["1.0.0", "1.10.0", "1.2.0", "1.2.0-rc.1", "0.9", "2.0.0-alpha", "2.0.0"]
    assert sorted(versions, key=version_key) == [
        "0.9",
        "1.0.0",
        "1.2.0-rc.1",
        "1.2.0",
        "1.10.0",
        "2.0.0-alpha",
        "2.0.0",
    ]


class In(BaseModel):
    x: int


def test_app_signatures() -> None:
    @runyard.app("t/model", version="1.0.0")
    def whole(input: In, ctx: AppContext) -> In:
        return input

    @runyard.app("t/spread", version="1.0.0")
    async def spread(image: runyard.File, scale: int = 2) -> dict:
        return {}

    w, s = definition_of(whole), definition_of(spread)
    assert w is not None and s is not None
    assert not w.spread and w.ctx_param == "ctx" and w.input_schema()["required"] == ["x"]
    assert s.spread and s.ctx_param is None
    assert s.input_schema()["properties"]["scale"]["default"] == 2
    args, kwargs = s.call_args(
        s.validate_input({"image": "data:text/plain;base64,aGk="}), AppContext(task_id="t", app="a")
    )
    assert args == () and kwargs["scale"] == 2 and kwargs["image"].read_bytes() == b"hi"
    with pytest.raises(ValueError):
        runyard.app("NoNamespace")
    with pytest.raises(ValueError):
        runyard.app("a/b", version="latest")


def test_context_progress_is_clamped_and_cancel_flag() -> None:
    seen: list[tuple[str, dict]] = []
    ctx = AppContext(task_id="t", app="a", emit=lambda k, d: seen.append((k, d)))
    ctx.progress(1.7, "over")
    ctx.log("hi")
    assert seen == [("progress", {"progress": 1.0, "message": "over"}), ("log", {"message": "hi"})]
    ctx.check_cancelled()
    ctx._set_cancelled()
    assert ctx.cancelled
    with pytest.raises(runyard.apps.TaskCancelled):
        ctx.check_cancelled()


def test_module_level_run_embedded(tasks_config_path: Path) -> None:
    import subprocess
    import sys

    from support.tasks_e2e import app_env

    code = (
        "import faulthandler; faulthandler.dump_traceback_later(50, exit=True)\n"  # a hang shows its stacks
        "import runyard; t = runyard.run('tests/echo@main', {'text': 'env'}); print(t.output['text'])"
    )
    env = {**app_env(), "RUNYARD_CONFIG": str(tasks_config_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "env"
