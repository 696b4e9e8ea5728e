"""Gateway configs and processes for the telemetry tests (tests/test_telemetry_*.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runyard.config import hash_api_key
from support.tasks_e2e import app_env

ADMIN_KEY = "ry_admin-telemetry-test-key-0001"
METRICS_TOKEN = "metrics-token-telemetry-test-7"
UPSTREAM_KEY = "sk-upstream-telemetry-secret-42"
WEBHOOK_SECRET = "whsec-telemetry-webhook-secret-9"
APP_SECRET = "app-secret-telemetry-value-5"


def telemetry_toml(root: Path, openai_url: str, *, otlp_url: str | None = None, extra: str = "") -> str:
    tracing = f'otlp_endpoint = "{otlp_url}"\nservice_name = "runyard-test"' if otlp_url else ""
    return f"""
[server]
api_keys = ["{hash_api_key(ADMIN_KEY)}"]
api_key_refresh_s = 0.2

[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"
flush_interval_ms = 20

[files]
dir = "{root / "files"}"

[cache]
strategy = "runyard"

[routing]
breaker_failures = 1000

[apps]
modules = ["apps.demo"]

[apps.secrets]
PRESENT_TOKEN = "{APP_SECRET}"

[workers]
concurrency = 4
poll_interval_s = 0.05

[webhooks]
secret = "{WEBHOOK_SECRET}"
allow_private_webhooks = true

[telemetry]
metrics_token = "{hash_api_key(METRICS_TOKEN)}"
{tracing}

[providers.mock]
kind = "openai"
base_url = "{openai_url}"
api_key_env = "RUNYARD_TELEMETRY_UPSTREAM_KEY"
timeout = 2.0

[providers.backup]
kind = "openai"
base_url = "{openai_url}"
api_key_env = "RUNYARD_TELEMETRY_UPSTREAM_KEY"
timeout = 2.0

[models.gpt]
routes = ["mock::gpt-test"]

[models.gpt-with-fallback]
routes = ["mock::gpt-primary", "backup::gpt-secondary"]
price = {{ input = 1.0, output = 2.0 }}

[embedding_models.embed]
routes = ["mock::embed-test"]
{extra}
"""


def write_config(root: Path, openai_url: str, **kwargs: object) -> Path:
    path = root / "runyard.toml"
    path.write_text(telemetry_toml(root, openai_url, **kwargs))  # type: ignore[arg-type]
    return path


def gateway_env(**extra: str) -> dict[str, str]:
    return {**app_env(), "RUNYARD_TELEMETRY_UPSTREAM_KEY": UPSTREAM_KEY, **extra}


def create_key(config: Path, name: str, *args: str) -> str:
    """``runyard keys create`` against the config's store; the new key."""
    out = subprocess.run(
        [sys.executable, "-m", "runyard", "keys", "create", "--config", str(config), "--name", name, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **gateway_env()},  # the whole environment (a scale-out test run's store too)
        cwd=config.parent,
    )
    return out.stdout.strip().splitlines()[-1]
