"""What every ``runyard`` command shares: the client it talks through, how it prints, how it fails."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..config import RunyardConfig, load_config

__all__ = [
    "CliError",
    "Command",
    "add_client_args",
    "add_json_flag",
    "client_for",
    "leaf",
    "parse_inputs",
    "print_json",
    "print_table",
    "read_text_file",
]

Command = Callable[[argparse.Namespace], None]


class CliError(Exception):
    """A user error: printed as one line ``runyard: <message>``, then exit ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def leaf(sub: Any, name: str, func: Command | None, helptext: str) -> argparse.ArgumentParser:
    """A subcommand parser whose own usage is shown on its errors (``func`` None: a group)."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=helptext, description=helptext)
    p.set_defaults(func=func, _parser=p)
    return p


def add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="run embedded with this config instead of calling a server")
    p.add_argument("--base-url", help="gateway URL (default: $RUNYARD_BASE_URL; embedded if unset)")


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (full ids, every field) instead of a table")


def client_for(args: argparse.Namespace) -> Any:
    """A client for ``--base-url`` / ``$RUNYARD_BASE_URL``, else the gateway embedded with ``--config``."""
    from ..client import Client

    base_url = getattr(args, "base_url", None) or os.environ.get("RUNYARD_BASE_URL")
    if base_url and not getattr(args, "config", None):
        return Client(base_url=base_url)
    return Client.embedded(config=config_for(args))


def config_for(args: argparse.Namespace) -> RunyardConfig:
    return load_config(getattr(args, "config", None))


def read_text_file(path: str) -> str:
    """The file's text, or a :class:`CliError` naming the file and why it cannot be read."""
    try:
        return Path(path).expanduser().read_text()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"{path}: cannot read it: {getattr(err, 'strerror', None) or err}") from None


def parse_inputs(pairs: Sequence[str], raw_json: str | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (VALUE is JSON if it parses; ``@path`` is a file to upload) over ``raw_json``."""
    data: dict[str, Any] = {}
    if raw_json:
        try:
            data = json.loads(raw_json)
        except ValueError as err:
            raise CliError(f"--json is not valid JSON: {err}", 2) from None
        if not isinstance(data, dict):
            raise CliError("--json must be a JSON object", 2)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--input {pair!r} must be KEY=VALUE", 2)
        if value.startswith("@"):
            path = Path(value[1:]).expanduser()
            if not path.is_file():
                raise CliError(f"--input {key}=@{value[1:]}: no such file")
            data[key] = path  # uploaded by the SDK
            continue
        try:
            data[key] = json.loads(value)
        except ValueError:
            data[key] = value
    return data


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A table whose cells are never cut: ids stay whole (and copyable) at any terminal width."""
    from rich.console import Console
    from rich.table import Column, Table

    rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    table = Table(*(Column(h, no_wrap=True, min_width=w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.width = max(console.width, sum(widths) + 3 * len(widths) + 1)
    console.print(table)
