"""The app of one ``runyard serve --workers N`` process, built from what the parent put in the
environment; and the rule for when several processes are allowed."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from ..config import RunyardConfig, load_config

CONFIG_ENV = "RUNYARD_CONFIG"  # load_config reads it
NO_WORKER_ENV = "RUNYARD_SERVE_NO_WORKER"


def app_from_env() -> Starlette:
    """uvicorn's factory in each worker process (``--workers N``)."""
    from .app import create_app

    return create_app(load_config(), worker=os.environ.get(NO_WORKER_ENV) != "1")


def unshared_state(config: RunyardConfig) -> str | None:
    """Why several processes would disagree, or None. Without ``[redis]`` each process has its own
    rate and spend limits, response cache and idempotency keys (always on: any request may send
    an Idempotency-Key), so a limit of R would admit R per process and a retried request could
    run twice: refused."""
    if config.redis is not None:
        return None
    return (
        "rate/spend limits, the response cache and idempotency keys would each be per process: "
        'add a [redis] table (url = "redis://HOST:6379/0") so the processes share them, or run one process'
    )
