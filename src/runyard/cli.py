"""The ``runyard`` command: serve, chat, quickstart, keys."""

from __future__ import annotations

import argparse
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
    serve.set_defaults(func=_serve)

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
    kcreate.add_argument("--config")
    kcreate.set_defaults(func=_keys_create)
    return p


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .server.app import create_app

    config = load_config(args.config)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        loop=_best_loop(),
        http="httptools",
        access_log=False,
        log_level=args.log_level,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


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


def _keys_create(args: argparse.Namespace) -> None:
    import asyncio

    from .backends.store import Store

    config = load_config(args.config)
    key = "ry_" + secrets.token_urlsafe(32)

    async def create() -> str:
        store = Store(config.storage.url)
        try:
            await store.start()
            return await store.add_api_key(args.name, hash_api_key(key))
        finally:
            await store.aclose()

    key_id = asyncio.run(create())
    print(f"created key {key_id} ({args.name}); it is shown once, store it now:\n{key}")


if __name__ == "__main__":
    main()
