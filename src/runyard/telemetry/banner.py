"""The start-up banner of ``runyard serve``: what runs, where, with what (never a secret)."""

from __future__ import annotations

import logging
from typing import Any

from .. import __version__
from ..config import RunyardConfig

log = logging.getLogger("runyard.serve")

MAX_LISTED = 20  # app names shown before "and N more"


def _safe_url(url: str) -> str:
    """A database/Redis URL without its password."""
    from sqlalchemy.engine import make_url  # here: 14 MB that serve --workers' supervisor never uses

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def banner_fields(
    config: RunyardConfig,
    *,
    url: str,
    config_path: str | None,
    apps: list[str],
    workers: int,
    task_worker: bool,
) -> dict[str, Any]:
    """What the banner says, as data (the JSON log format writes these fields)."""
    redis = getattr(getattr(config, "redis", None), "url", None) or getattr(config.storage, "redis_url", None)
    return {
        "version": __version__,
        "listening": url,
        "config": config_path or "(built-in defaults)",
        "store": _safe_url(config.storage.url),
        "redis": _safe_url(redis) if redis else None,
        "providers": {name: bool(p.api_key()) for name, p in sorted(config.providers.items())},
        "apps": apps,
        "workers": workers,
        "task_worker": task_worker,
        "metrics": config.telemetry.metrics,
        "tracing": config.telemetry.otlp_endpoint is not None,
        "access_log": config.telemetry.access_log,
    }


def banner_text(fields: dict[str, Any]) -> str:
    providers = ", ".join(f"{n} (key {'set' if ok else 'not set'})" for n, ok in fields["providers"].items())
    apps = fields["apps"]
    shown = ", ".join(apps[:MAX_LISTED]) + (f" and {len(apps) - MAX_LISTED} more" if len(apps) > MAX_LISTED else "")
    lines = [
        f"runyard {fields['version']} listening on {fields['listening']}",
        f"  config:     {fields['config']}",
        f"  store:      {fields['store']}",
        f"  redis:      {fields['redis'] or 'off (in-process limits, cache, locks)'}",
        f"  providers:  {providers or 'none'}",
        f"  apps:       {len(apps)} loaded{': ' + shown if apps else ''}",
        f"  workers:    {fields['workers']} process(es); "
        f"task worker in process: {'yes' if fields['task_worker'] else 'no'}",
        f"  telemetry:  metrics {'on at /metrics' if fields['metrics'] else 'off'}, "
        f"tracing {'on' if fields['tracing'] else 'off'}, access log {'on' if fields['access_log'] else 'off'}",
    ]
    return "\n".join(lines)


def log_banner(fields: dict[str, Any]) -> None:
    """Write the banner at INFO on ``runyard.serve`` (shown whatever ``--log-level`` is)."""
    log.setLevel(logging.INFO)
    log.info("%s", banner_text(fields), extra={"fields": {"event": "started", **fields}})
