"""``runyard serve | worker | chat | quickstart``."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
from typing import Any

from ..config import ConfigError, RunyardConfig, load_config
from ._common import add_client_args, client_for, config_for, leaf

__all__ = ["register", "serve_arguments"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def register(sub: Any) -> None:
    serve_arguments(leaf(sub, "serve", _serve, "run the gateway server"))

    worker = leaf(sub, "worker", _worker, "run task workers against the configured store")
    worker.add_argument("--config", help="runyard.toml (the same store as the server's)")
    worker.add_argument("--pool", action="append", help="serve only this pool (repeatable; default: all)")
    _log_level(worker)

    chat = leaf(sub, "chat", _chat, "send one chat message")
    chat.add_argument("prompt")
    chat.add_argument("--model", default=os.environ.get("RUNYARD_MODEL", "dummy::echo"))
    chat.add_argument("--stream", action="store_true")
    add_client_args(chat)

    quick = leaf(sub, "quickstart", _quickstart, "a tour of the embedded gateway (no server, no keys)")
    quick.add_argument("--config", help="config file (default: built-ins)")


def serve_arguments(serve: argparse.ArgumentParser) -> None:
    """``runyard serve``'s flags, all in one place."""
    serve.add_argument("--config", help="runyard.toml (default: ./runyard.toml if present, else built-ins)")
    serve.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8000)")
    _log_level(serve)
    serve.add_argument(
        "--proxy-headers", action="store_true", help="trust X-Forwarded-For/Proto (behind a reverse proxy)"
    )
    serve.add_argument("--no-worker", action="store_true", help="do not run tasks here (use `runyard worker`)")
    serve.add_argument(
        "--workers", type=int, default=1, help="gateway processes on one port (more than 1 needs [redis])"
    )
    serve.add_argument("--log-format", choices=["text", "json"], help="log lines as text or JSON (default: config)")
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one log line per request (default: [telemetry] access_log)",
    )


def _log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="warning", type=str.lower, choices=LOG_LEVELS, metavar="LEVEL",
                   help=f"one of {', '.join(LOG_LEVELS)} (default: warning)")  # fmt: skip


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from ..server.wire import GatheringHttpToolsProtocol

    config = load_config(args.config)
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    on_started = _serve_telemetry(args, config)
    if args.workers > 1:
        return _serve_processes(args, config, args.workers)
    from ..server.app import create_app  # not in --workers' supervisor: 25 MB it never uses
    from ..server.factory import ready_to_serve

    app = create_app(config, worker=not getattr(args, "no_worker", False), on_started=on_started)
    ready_to_serve(app)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop=_best_loop(),
        http=GatheringHttpToolsProtocol,  # httptools, an answer's writes sent as one (server/wire.py)
        access_log=False,
        server_header=False,
        proxy_headers=args.proxy_headers,  # off by default: its middleware costs CPU on every request
        log_level=args.log_level,
        log_config=None,  # logging as _serve_telemetry set it up (format, redaction)
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


def _serve_processes(args: argparse.Namespace, config: RunyardConfig, workers: int) -> None:
    """``--workers N``: uvicorn's supervisor runs N processes (restarting any that die), each with
    a listening socket of its own on the port (``SO_REUSEPORT``: :mod:`runyard.server.listeners`),
    each building its own app from the same config (:mod:`runyard.server.factory`)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from ..server.factory import CONFIG_ENV, LOGGING_ENV, NO_WORKER_ENV, unshared_state
    from ..server.listeners import placeholder
    from ..server.wire import GatheringHttpToolsProtocol

    problem = unshared_state(config)
    if problem:
        raise ConfigError(f"--workers {workers}: {problem}")
    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    os.environ[NO_WORKER_ENV] = "1" if getattr(args, "no_worker", False) else "0"
    tc = config.telemetry  # as _serve_telemetry settled it from the flags
    os.environ[LOGGING_ENV] = f"{tc.log_format}:{args.log_level}:{int(tc.access_log)}"
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    server = uvicorn.Config(
        "runyard.server.factory:app_from_env",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        loop=_best_loop(),
        http=GatheringHttpToolsProtocol,
        access_log=False,
        server_header=False,
        proxy_headers=args.proxy_headers,
        log_level=args.log_level,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    try:
        sock = placeholder(host, port)
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    try:
        Multiprocess(server, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def _serve_telemetry(args: argparse.Namespace, config: RunyardConfig) -> Any:
    """Logging for ``serve`` (format, access log, redaction of every configured secret) and the
    start-up banner, returned as create_app's ``on_started``."""
    from ..telemetry.banner import banner_fields, log_banner
    from ..telemetry.logs import ACCESS_LOGGER, configure, secrets_of

    tc = config.telemetry
    if args.log_format:
        tc.log_format = args.log_format
    if args.access_log is not None:
        tc.access_log = args.access_log
    configure(tc.log_format, args.log_level, secrets_of(config))
    if tc.access_log:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port

    def on_started(gateway: Any) -> None:
        log_banner(
            banner_fields(
                config,
                url=f"http://{host}:{port}",
                config_path=args.config or ("runyard.toml" if os.path.exists("runyard.toml") else None),
                apps=gateway.apps.names(),
                workers=args.workers,
                task_worker=not getattr(args, "no_worker", False),
            )
        )

    return on_started


def _worker(args: argparse.Namespace) -> None:
    import asyncio

    from ..gateway import Gateway
    from ..worker import run_worker

    level = "DEBUG" if args.log_level == "trace" else args.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_config(args.config)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    tracer = _worker_tracing(config)
    try:
        asyncio.run(run_worker(Gateway(config), args.pool))
    finally:
        if tracer is not None:
            tracer.shutdown()  # exports the spans still queued


def _worker_tracing(config: RunyardConfig) -> Any:
    """With ``[telemetry] otlp_endpoint``, this process's spans (tasks, their model calls) are exported."""
    tc = config.telemetry
    if not tc.otlp_endpoint:
        return None
    from ..telemetry import tracing
    from ..telemetry.logs import secrets_of

    tracer = tracing.Tracing(tc.otlp_endpoint, tc.service_name, tc.sample_ratio, redact=secrets_of(config))
    tracing.install(tracer)
    return tracer


def _best_loop() -> str:
    """uvloop when installed; looked up, not imported (12 MB ``--workers``' supervisor never runs)."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _chat(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        if args.stream:
            for chunk in client.ai.chat(args.prompt, model=args.model, stream=True):
                print(chunk.delta.content or "", end="", flush=True)
            print()
        else:
            result = client.ai.chat(args.prompt, model=args.model)
            print(result.content if result.content is not None else result.tool_calls)


def _quickstart(args: argparse.Namespace) -> None:
    from ..quickstart import run_quickstart

    run_quickstart(config_for(args))
