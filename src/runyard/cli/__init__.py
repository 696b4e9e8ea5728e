"""The ``runyard`` command. Each user error is one line on stderr and a non-zero exit, never a traceback
(``RUNYARD_DEBUG=1`` shows it for unexpected ones); a bad flag shows the usage of the subcommand it was given to."""

from __future__ import annotations

import argparse
import os
import re
import sys

from .. import __version__
from ..config import ConfigError
from ._common import CliError, Command

__all__ = ["build_parser", "main"]

CONNECT_HINT = (
    "start the gateway with `runyard serve`, point --base-url / RUNYARD_BASE_URL at a running one, "
    "or leave both unset to run embedded (Client.embedded() in Python)"
)
MISSING_MODULE_HINTS = {
    "psycopg2": "storage.url needs an async driver: write postgresql+asyncpg://...",
    "asyncpg": "pip install asyncpg (for postgresql+asyncpg:// storage URLs)",
    "llama_cpp": "pip install 'runyard[local]' (see README: Local models)",
}


def build_parser() -> argparse.ArgumentParser:
    from . import audit, info, keys, serving, tasks, workflows

    p = argparse.ArgumentParser(prog="runyard", description="Self-hosted AI inference: gateway, SDK, embedded mode.")
    p.add_argument("--version", action="version", version=f"runyard {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    serving.register(sub)
    tasks.register(sub)
    workflows.register(sub)
    info.register(sub)
    keys.register(sub)
    audit.register(sub, keys.with_store)
    return p


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    owner: argparse.ArgumentParser = getattr(args, "_parser", None) or parser
    if extra:
        owner.error(f"unrecognized arguments: {' '.join(extra)}")
    func: Command | None = getattr(args, "func", None)
    if func is None:
        owner.print_help(sys.stderr)
        sys.exit(2)
    sys.exit(run_command(func, args))


def run_command(func: Command, args: argparse.Namespace) -> int:
    """Run ``func`` and turn what it raises into one line and an exit status."""
    from ..errors import APITimeoutError, RunyardError
    from ..errors import ConnectionError as GatewayUnreachable

    try:
        func(args)
        sys.stdout.flush()
        return 0
    except CliError as err:
        return _fail(str(err), err.code)
    except ConfigError as err:
        return _fail(str(err), 2)
    except RunyardError as err:
        if isinstance(err, GatewayUnreachable) and not isinstance(err, APITimeoutError):
            url = re.search(r"https?://[^/\s]+", err.message)
            return _fail(f"cannot reach the gateway{' at ' + url[0] if url else ''}: {CONNECT_HINT}", 1)
        return _fail(f"{err.code}: {err.message}{_details_text(err.details)}", 1)
    except BrokenPipeError:
        # the reader went away (`runyard tasks get ... | head`): stop quietly, as a SIGPIPE'd tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as err:
        hint = MISSING_MODULE_HINTS.get((err.name or "").split(".")[0], "install it, or the runyard extra that has it")
        return _fail(f"missing Python package {err.name!r}: {hint}", 1)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        return _fail(f"{where}{err.strerror or err}", 1)
    except Exception as err:
        if os.environ.get("RUNYARD_DEBUG"):
            raise
        return _fail(f"unexpected error: {type(err).__name__}: {err} (RUNYARD_DEBUG=1 shows the traceback)", 1)


def _fail(message: str, code: int) -> int:
    print(f"runyard: {message}", file=sys.stderr)
    return code


def _details_text(details: object) -> str:
    """An error's details on the same line: the problems' messages, or the details, shortened."""
    if not details:
        return ""
    if isinstance(details, list) and all(isinstance(d, dict) and "message" in d for d in details):
        where = ("block", "field", "loc", "key")
        text = "; ".join(f"{next((str(d[k]) + ': ' for k in where if d.get(k)), '')}{d['message']}" for d in details)
    else:
        text = str(details)
    return f" ({text[:400]}{'…' if len(text) > 400 else ''})"
