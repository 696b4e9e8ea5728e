"""The ``runyard`` command: serve, chat, quickstart, keys."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import secrets
import sys
from typing import Any

from .config import ConfigError, RunyardConfig, hash_api_key, load_config


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        sys.exit(2)
    try:
        args.func(args)
    except ConfigError as err:
        print(f"runyard: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="runyard", description="Self-hosted AI inference: gateway, SDK, embedded mode.")
    sub = p.add_subparsers(title="commands")

    serve = sub.add_parser("serve", help="run the gateway server")
    serve.add_argument("--config", help="runyard.toml (default: ./runyard.toml if present, else built-ins)")
    serve.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8000)")
    serve.add_argument("--log-level", default="warning")
    serve.add_argument("--log-format", choices=["text", "json"], help="log lines as text or JSON (default: config)")
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one log line per request (default: [telemetry] access_log)",
    )
    serve.add_argument(
        "--proxy-headers", action="store_true", help="trust X-Forwarded-For/Proto (behind a reverse proxy)"
    )
    serve.add_argument("--no-worker", action="store_true", help="do not run tasks here (use `runyard worker`)")
    serve.add_argument(
        "--workers", type=int, default=1, help="gateway processes on one port (more than 1 needs [redis])"
    )
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="run task workers against the configured store")
    worker.add_argument("--config", help="runyard.toml (the same store as the server's)")
    worker.add_argument("--pool", action="append", help="serve only this pool (repeatable; default: all)")
    worker.add_argument("--log-level", default="warning")
    worker.set_defaults(func=_worker)

    run = sub.add_parser("run", help="run an app and show its progress")
    run.add_argument("app", help="namespace/name[@version|@alias]")
    run.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an input field; VALUE is JSON if it parses, else a string; KEY=@path uploads a file",
    )
    run.add_argument("--json", help="the whole input as a JSON object")
    run.add_argument("--session", help="'new' or a session id")
    run.add_argument("--pool")
    run.add_argument("--no-wait", action="store_true", help="print the task id and return")
    _client_args(run)
    run.set_defaults(func=_run)

    tasks = sub.add_parser("tasks", help="list, show and cancel tasks")
    tasks_sub = tasks.add_subparsers(title="tasks commands")
    tls = tasks_sub.add_parser("ls", help="recent tasks, newest first")
    tls.add_argument("--app")
    tls.add_argument("--status")
    tls.add_argument("--limit", type=int, default=20)
    _client_args(tls)
    tls.set_defaults(func=_tasks_ls)
    for name, func, helptext in (("get", _tasks_get, "show a task"), ("cancel", _tasks_cancel, "cancel a task")):
        cmd = tasks_sub.add_parser(name, help=helptext)
        cmd.add_argument("task_id")
        _client_args(cmd)
        cmd.set_defaults(func=func)

    apps = sub.add_parser("apps", help="apps")
    apps_sub = apps.add_subparsers(title="apps commands")
    als = apps_sub.add_parser("ls", help="the apps the gateway serves")
    _client_args(als)
    als.set_defaults(func=_apps_ls)

    from .cli_workflows import add_workflow_commands

    add_workflow_commands(sub, _client_args, _cli_errors, _client)

    chat = sub.add_parser("chat", help="send one chat message")
    chat.add_argument("prompt")
    chat.add_argument("--model", default=os.environ.get("RUNYARD_MODEL", "dummy::echo"))
    chat.add_argument("--stream", action="store_true")
    chat.add_argument("--config", help="run embedded with this config instead of calling a server")
    chat.add_argument("--base-url", help="gateway URL (default: $RUNYARD_BASE_URL; embedded if unset)")
    chat.set_defaults(func=_chat)

    quick = sub.add_parser("quickstart", help="a tour of the embedded gateway (no server, no keys)")
    quick.add_argument("--config", help="config file (default: built-ins)")
    quick.set_defaults(func=_quickstart)

    keys = sub.add_parser("keys", help="API keys (stored hashed)")
    keys_sub = keys.add_subparsers(title="keys commands")
    khash = keys_sub.add_parser("hash", help="print the hashed form of a key for server.api_keys")
    khash.add_argument("key", nargs="?", help="the key (read from stdin if omitted)")
    khash.set_defaults(func=_keys_hash)
    kcreate = keys_sub.add_parser("create", help="create a key in the store and print it once")
    kcreate.add_argument("--name", required=True)
    kcreate.add_argument("--workspace", default="default", help="the key sees its workspace's usage")
    kcreate.add_argument("--rpm-sync", type=_positive_int, help="sync requests per minute ([limits] window)")
    kcreate.add_argument("--rpm-async", type=_positive_int, help="async submissions (runs without wait) per minute")
    kcreate.add_argument("--tpm", type=_positive_int, help="tokens (input + output) per minute")
    kcreate.add_argument("--spend-limit", type=_non_negative_float, metavar="USD", help="spending limit per period")
    kcreate.add_argument("--period", choices=["day", "month"], help="the spending period (default from [limits])")
    kcreate.add_argument("--config")
    kcreate.set_defaults(func=_keys_create)
    klist = keys_sub.add_parser("list", help="list keys (no secrets): id, name, workspace, limits, created/revoked")
    klist.add_argument("--json", action="store_true", help="one JSON object per key")
    klist.add_argument("--active", action="store_true", help="hide revoked keys")
    klist.add_argument("--config")
    klist.set_defaults(func=_keys_list)
    krevoke = keys_sub.add_parser("revoke", help="revoke a key; a running server refuses it within a second")
    krevoke.add_argument("key_id")
    krevoke.add_argument("--config")
    krevoke.set_defaults(func=_keys_revoke)

    from .cli_audit import add_audit_command

    add_audit_command(sub, _with_store)
    return p


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .server.app import create_app

    config = load_config(args.config)
    workers = getattr(args, "workers", 1)
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    on_started = _serve_telemetry(args, config)
    if workers > 1:
        return _serve_processes(args, config, workers)
    app = create_app(config, worker=not getattr(args, "no_worker", False), on_started=on_started)
    # Long-lived start-up objects leave the GC's view, and young-generation collections run
    # less often: the collector was 15% of the gateway's CPU under load before this.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop=_best_loop(),
        http="httptools",
        access_log=False,
        server_header=False,
        proxy_headers=args.proxy_headers,  # off by default: its middleware costs CPU on every request
        log_level=args.log_level,
        log_config=None,  # logging as _serve_telemetry set it up (format, redaction)
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


def _serve_processes(args: argparse.Namespace, config: RunyardConfig, workers: int) -> None:
    """``--workers N``: uvicorn's supervisor runs N processes on one socket (restarting any that
    die); each builds its own app from the same config (:mod:`runyard.server.factory`)."""
    import uvicorn

    from .server.factory import CONFIG_ENV, NO_WORKER_ENV, unshared_state

    problem = unshared_state(config)
    if problem:
        raise ConfigError(f"--workers {workers}: {problem}")
    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    os.environ[NO_WORKER_ENV] = "1" if getattr(args, "no_worker", False) else "0"
    uvicorn.run(
        "runyard.server.factory:app_from_env",
        factory=True,
        workers=workers,
        host=args.host or config.server.host,
        port=args.port if args.port is not None else config.server.port,
        loop=_best_loop(),
        http="httptools",
        access_log=False,
        server_header=False,
        proxy_headers=args.proxy_headers,
        log_level=args.log_level,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


def _serve_telemetry(args: argparse.Namespace, config: RunyardConfig) -> Any:
    """Logging for ``serve`` (format, access log, redaction of every configured secret) and the
    start-up banner, returned as create_app's ``on_started``."""
    from .telemetry.banner import banner_fields, log_banner
    from .telemetry.logs import ACCESS_LOGGER, configure, secrets_of

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
                workers=getattr(args, "workers", None) or 1,
                task_worker=not getattr(args, "no_worker", False),
            )
        )

    return on_started


def _worker(args: argparse.Namespace) -> None:
    import asyncio
    import logging

    from .gateway import Gateway
    from .worker import run_worker

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
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
    from .telemetry import tracing
    from .telemetry.logs import secrets_of

    tracer = tracing.Tracing(tc.otlp_endpoint, tc.service_name, tc.sample_ratio, redact=secrets_of(config))
    tracing.install(tracer)
    return tracer


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="run embedded with this config instead of calling a server")
    p.add_argument("--base-url", help="gateway URL (default: $RUNYARD_BASE_URL; embedded if unset)")


def _cli_errors(func: Any) -> Any:
    def wrapper(args: argparse.Namespace) -> None:
        from .errors import RunyardError

        try:
            func(args)
        except RunyardError as err:
            print(f"runyard: {err.code}: {err.message}", file=sys.stderr)
            if err.details:
                print(f"  details: {err.details}", file=sys.stderr)
            sys.exit(1)

    return wrapper


def _parse_inputs(pairs: list[str], raw_json: str | None) -> dict[str, Any]:
    import json
    from pathlib import Path

    data: dict[str, Any] = json.loads(raw_json) if raw_json else {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"runyard: --input {pair!r} must be KEY=VALUE")
        if value.startswith("@"):
            data[key] = Path(value[1:]).expanduser()  # uploaded by the SDK
            continue
        try:
            data[key] = json.loads(value)
        except ValueError:
            data[key] = value
    return data


@_cli_errors
def _run(args: argparse.Namespace) -> None:
    import json

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    payload = _parse_inputs(args.input, args.json)
    with _client(args) as client:
        if args.no_wait:
            task = client.run(args.app, payload, wait=False, session=args.session, pool=args.pool)
            print(task.id)
            return
        final: dict[str, Any] | None = None
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"))
        with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as bar:
            row = bar.add_task(args.app, total=1.0)
            for update in client.run(args.app, payload, stream=True, session=args.session, pool=args.pool):
                if update.type == "log":
                    bar.console.print(f"[dim]{update.message}[/dim]")
                elif update.type == "progress":
                    text = f"{args.app}: {update.message}" if update.message else args.app
                    bar.update(row, completed=update.progress or 0.0, description=text)
                elif update.type == "status":
                    bar.update(row, description=f"{args.app} [{update.status}]")
                    if update.task is not None:
                        final = update.task
            if final is not None and final["status"] == "completed":
                bar.update(row, completed=1.0)
    if final is None:
        raise SystemExit("runyard: the event stream ended early")
    if final["status"] != "completed":
        error = final.get("error") or {}
        print(f"runyard: task {final['id']} {final['status']}: {error.get('message', '')}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(final["output"], indent=2, default=str))


@_cli_errors
def _tasks_ls(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    with _client(args) as client:
        page = client.tasks.list(app=args.app, status=args.status, limit=args.limit)
    table = Table("id", "app", "status", "created", "duration ms")
    for t in page.data:
        table.add_row(t["id"], t["app"], t["status"], t["created_at"] or "", str(t["duration_ms"] or ""))
    Console().print(table)


@_cli_errors
def _tasks_get(args: argparse.Namespace) -> None:
    import json

    with _client(args) as client:
        print(json.dumps(client.tasks.get(args.task_id).to_dict(), indent=2, default=str))


@_cli_errors
def _tasks_cancel(args: argparse.Namespace) -> None:
    with _client(args) as client:
        task = client.tasks.cancel(args.task_id)
    print(f"{task.id} {task.status}{' (cancel requested)' if task.to_dict().get('cancel_requested') else ''}")


@_cli_errors
def _apps_ls(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    with _client(args) as client:
        apps = client.request("GET", "/v1/apps")["data"]
    table = Table("app", "latest", "kind", "requirements", "description")
    for a in apps:
        reqs = ", ".join(f"{r['type']}:{r['key']}" for r in a["requirements"])
        table.add_row(a["name"], a["version"], a["kind"], reqs, (a["description"] or "").split("\n")[0])
    Console().print(table)


def _best_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _client(args: argparse.Namespace) -> Any:
    from .client import Client

    base_url = getattr(args, "base_url", None) or os.environ.get("RUNYARD_BASE_URL")
    if base_url and not getattr(args, "config", None):
        return Client(base_url=base_url)
    return Client.embedded(config=_config_or_default(getattr(args, "config", None)))


def _config_or_default(path: str | None) -> RunyardConfig:
    return load_config(path)


def _chat(args: argparse.Namespace) -> None:
    from .errors import RunyardError

    try:
        with _client(args) as client:
            if args.stream:
                for chunk in client.ai.chat(args.prompt, model=args.model, stream=True):
                    print(chunk.delta.content or "", end="", flush=True)
                print()
            else:
                result = client.ai.chat(args.prompt, model=args.model)
                print(result.content if result.content is not None else result.tool_calls)
    except RunyardError as err:
        print(f"runyard: {err.code}: {err.message}", file=sys.stderr)
        sys.exit(1)


def _quickstart(args: argparse.Namespace) -> None:
    from .quickstart import run_quickstart

    run_quickstart(_config_or_default(args.config))


def _keys_hash(args: argparse.Namespace) -> None:
    key = args.key if args.key is not None else sys.stdin.readline().strip()
    if not key:
        print("runyard: no key given", file=sys.stderr)
        sys.exit(2)
    print(hash_api_key(key))


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return n


def _non_negative_float(value: str) -> float:
    x = float(value)
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, not {value}")
    return x


def _with_store(config_path: str | None, work: Any) -> Any:
    """Run ``work(store)`` against the configured store (migrated first); no server needed."""
    import asyncio

    from .backends.store import Store

    config = load_config(config_path)

    async def run() -> Any:
        store = Store(config.storage.url)
        try:
            await store.start()
            return await work(store)
        finally:
            await store.aclose()

    return asyncio.run(run())


def _keys_create(args: argparse.Namespace) -> None:
    key = "ry_" + secrets.token_urlsafe(32)
    limits = {
        name: getattr(args, name)
        for name in ("rpm_sync", "rpm_async", "tpm", "spend_limit", "period")
        if getattr(args, name) is not None
    }
    if "period" in limits and "spend_limit" not in limits:
        print("runyard: --period needs --spend-limit", file=sys.stderr)
        sys.exit(2)

    async def create(store: Any) -> str:
        from .cli_audit import record

        key_id: str = await store.add_api_key(args.name, hash_api_key(key), workspace=args.workspace, **limits)
        details = {"name": args.name, "workspace": args.workspace, "limits": limits}
        await record(store, "key.created", key_id, details)
        return key_id

    key_id = _with_store(args.config, create)
    shown = ", ".join(f"{k}={v}" for k, v in limits.items()) or "the [limits] defaults"
    print(f"created key {key_id} ({args.name}, workspace {args.workspace}, limits: {shown})")
    print(f"it is shown once, store it now:\n{key}")


def _limits_text(row: dict[str, Any]) -> str:
    parts = [f"{name}={row[name]}" for name in ("rpm_sync", "rpm_async", "tpm") if row.get(name) is not None]
    if row.get("spend_limit") is not None:
        parts.append(f"spend=${row['spend_limit']:g}/{row.get('period') or 'default period'}")
    return " ".join(parts) or "defaults"


def _keys_list(args: argparse.Namespace) -> None:
    import json

    rows = _with_store(args.config, lambda store: store.list_api_keys(include_revoked=not args.active))
    if args.json:
        for row in rows:
            print(json.dumps(row, default=str))
        return
    from rich.console import Console
    from rich.table import Column, Table

    table = Table(Column("id", no_wrap=True, min_width=36), "name", "workspace", "limits", "created", "revoked")
    for row in rows:
        created = row["created_at"].strftime("%Y-%m-%d %H:%M") if row["created_at"] else ""
        revoked = row["revoked_at"].strftime("%Y-%m-%d %H:%M") if row["revoked_at"] else ""
        table.add_row(row["id"], row["name"], row["workspace"], _limits_text(row), created, revoked)
    console = Console()
    console.width = max(console.width, 140)  # ids stay whole when piped
    console.print(table)


def _keys_revoke(args: argparse.Namespace) -> None:
    async def revoke(store: Any) -> dict[str, Any] | None:
        from .cli_audit import record

        row: dict[str, Any] | None = await store.revoke_api_key(args.key_id)
        if row is not None:
            await record(store, "key.revoked", row["id"], {"name": row["name"]})
        return row

    row = _with_store(args.config, revoke)
    if row is None:
        print(f"runyard: no key {args.key_id}", file=sys.stderr)
        sys.exit(1)
    print(f"revoked key {row['id']} ({row['name']}) at {row['revoked_at']}")


if __name__ == "__main__":
    main()
