"""No secret reaches a log line or an exported span: traffic carrying known secrets (API keys
in Authorization and x-api-key, a wrong key, the provider key, an upstream error that quotes
it, the webhook secret, an app secret, SpeedPix app secrets, the metrics token), then every byte of the gateway's
log and of every OTLP payload is searched for each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import speedpix

from runyard import Client, TaskFailedError
from runyard.telemetry.logs import REDACTED, Redactor
from support.gateway import GatewayProcess
from support.openai_mock import B, MockOpenAI
from support.otlp_receiver import OtlpReceiver
from support.telemetry_config import (
    ADMIN_KEY,
    APP_SECRET,
    METRICS_TOKEN,
    UPSTREAM_KEY,
    WEBHOOK_SECRET,
    create_key,
    gateway_env,
    write_config,
)

WRONG_KEY = "ry_wrong-key-that-is-also-secret-77"
SP_KEY, SP_SECRET = "sp-telemetry-app", "speedpix-telemetry-secret-31"
SP_OTHER_SECRET = "speedpix-telemetry-secret-other-32"  # the table form: {secret = ...}
SPEEDPIX = f"""
[apps.integrations.speedpix.apps]
{SP_KEY} = "{SP_SECRET}"
sp-other = {{ secret = "{SP_OTHER_SECRET}" }}
"""


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    try:
        yield r
    finally:
        r.stop()


def test_no_secret_in_logs_or_spans(tmp_path: Path, mock_openai: MockOpenAI, receiver: OtlpReceiver) -> None:
    config = write_config(tmp_path, mock_openai.url, otlp_url=receiver.url, extra=SPEEDPIX)
    tenant_key = create_key(config, "tenant")
    args = ["--access-log", "--log-format", "text", "--log-level", "info"]
    gw = GatewayProcess(config, env=gateway_env(), args=args).start()
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        chat = {"model": "gpt-with-fallback", "messages": [{"role": "user", "content": "hello"}]}
        # the upstream refuses, quoting the key it got (as real providers do), then falls back
        quoted = {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}", "type": "auth"}}
        mock_openai.script(B.status(500, body=quoted))
        assert httpx.post(gw.url + "/v1/chat/completions", json=chat, headers=auth).status_code == 200
        mock_openai.script(B.status(401, body=quoted))
        solo = {**chat, "model": "gpt", "messages": [{"role": "user", "content": "again"}]}
        assert httpx.post(gw.url + "/v1/chat/completions", json=solo, headers=auth).status_code == 502
        assert httpx.get(gw.url + "/v1/models", headers={"x-api-key": tenant_key}).status_code == 200
        assert httpx.get(gw.url + "/v1/models", headers={"Authorization": f"Bearer {WRONG_KEY}"}).status_code == 401
        metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert metrics.status_code == 200
        with Client(base_url=gw.url, api_key=ADMIN_KEY, max_retries=0) as client:
            assert client.run("tests/has-secret", {}).status == "completed"  # reads the app secret
            task = client.run("tests/echo", {"text": "x"}, webhook=receiver.url + "/hook")  # signed, refused
            assert task.status == "completed"
            # an app failing with a message that quotes SpeedPix secrets: logged and on the task.run span
            with pytest.raises(TaskFailedError):
                client.run("tests/fails", {"why": f"{SP_SECRET} and {SP_OTHER_SECRET}"})
        (tmp_path / "in.png").write_bytes(b"pixels")
        uploaded = speedpix.Client(app_key=SP_KEY, app_secret=SP_SECRET, endpoint=gw.url).files.create(
            tmp_path / "in.png"
        )  # a signed SpeedPix call
        assert httpx.get(uploaded.access_url).content == b"pixels"
    finally:
        gw.stop()

    log = gw.log_path.read_text()
    assert "listening on" in log and "POST /v1/chat/completions 200" in log  # the log is there
    assert "upstream mock" in log  # the failures were logged
    spans = receiver.wait_for(lambda ss: any(s.name == "task.run tests/fails" and s.status_code == 2 for s in ss))
    exported = b"".join(receiver.raw)
    assert spans and exported
    assert "boom: [REDACTED] and [REDACTED]" in log  # the failure was logged, redacted
    secrets = (ADMIN_KEY, tenant_key, WRONG_KEY, UPSTREAM_KEY, WEBHOOK_SECRET, APP_SECRET, METRICS_TOKEN)
    for secret in (*secrets, SP_SECRET, SP_OTHER_SECRET):
        assert log.count(secret) == 0, f"{secret[:6]}… in the log"
        assert exported.count(secret.encode()) == 0, f"{secret[:6]}… in an exported span"
    failed = [s for s in spans if s.status_code == 2 and s.attributes.get("gen_ai.provider.name") == "mock"]
    assert failed, "the failed attempts were exported"
    assert REDACTED.encode() in exported, "the upstream's quoted key was on a span, redacted"
    app_failure = [s for s in spans if s.name == "task.run tests/fails"]
    assert app_failure and app_failure[0].attributes["error.type"] == "app_error"
    assert b"boom: " + REDACTED.encode() in exported, "the app's failure was on its span, redacted"


def test_redactor_shapes_and_known_values() -> None:
    redact = Redactor(["configured-secret-value", "short"])
    line = (
        "auth Authorization: Bearer abc.def-123 key sk-proj-abcdefghijkl and ry_abcdefghijklmnop "
        'x-api-key=zzz-111 {"api_key": "k-999"} value configured-secret-value short'
    )
    out = redact(line)
    for leaked in (
        "abc.def-123",
        "sk-proj-abcdefghijkl",
        "ry_abcdefghijklmnop",
        "zzz-111",
        "k-999",
        "configured-secret",
    ):
        assert leaked not in out
    assert out.count(REDACTED) == 6 and "short" in out  # too short a value to redact blindly
    assert redact("tokens=12/34 request_id=req_1") == "tokens=12/34 request_id=req_1"
