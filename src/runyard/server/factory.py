"""The app of one ``runyard serve --workers N`` process, built from what the parent put in the
environment; and the rule for when several processes are allowed."""

from __future__ import annotations

import gc
import logging
import os
from typing import TYPE_CHECKING

from ..config import RunyardConfig, load_config

if TYPE_CHECKING:
    from starlette.applications import Starlette

CONFIG_ENV = "RUNYARD_CONFIG"  # load_config reads it
NO_WORKER_ENV = "RUNYARD_SERVE_NO_WORKER"
LOGGING_ENV = "RUNYARD_SERVE_LOGGING"  # "<format>:<level>:<access log 0|1>", as the parent set it up


def app_from_env() -> Starlette:
    """uvicorn's factory in each worker process (``--workers N``)."""
    from .app import create_app

    config = load_config()
    logging_setup = os.environ.get(LOGGING_ENV)
    if logging_setup:  # the parent's log format, level, access log and redaction, here too
        from ..telemetry.logs import ACCESS_LOGGER, configure, secrets_of

        fmt, level, access = logging_setup.split(":")
        config.telemetry.log_format, config.telemetry.access_log = fmt, access == "1"  # type: ignore[assignment]
        configure(config.telemetry.log_format, level, secrets_of(config))
        logging.getLogger("uvicorn.access").propagate = False  # Runyard's access log, not uvicorn's
        if config.telemetry.access_log:
            logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    app = create_app(config, worker=os.environ.get(NO_WORKER_ENV) != "1")
    ready_to_serve(app)
    return app


def ready_to_serve(app: Starlette) -> None:
    """What every serving process does before it serves: load the apps (a module that does not
    import is one logged line, not a failed start), then take the start-up objects out of the
    garbage collector's view and run young-generation collections less often. Without it the
    collector was 15% of a gateway's CPU under load; the ``--workers N`` processes went without
    until 2026-12-06 and spent ~45% more CPU per request than one process (bench/README.md)."""
    app.state.gateway.apps.load()
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


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
