"""``runyard workflows push|publish|alias|status|ls|run`` (registered by :mod:`runyard.cli`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_workflow_commands"]


def add_workflow_commands(sub: Any, client_args: Any, cli_errors: Any, client: Any) -> None:
    wf = sub.add_parser("workflows", help="workflows: push a definition, publish versions, move aliases")
    wsub = wf.add_subparsers(title="workflows commands")

    def command(name: str, helptext: str, func: Any, *positional: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = wsub.add_parser(name, help=helptext)
        for arg in positional:
            p.add_argument(arg)
        client_args(p)
        p.set_defaults(func=cli_errors(lambda args: func(args, client)))
        return p

    command("push", "save a YAML/JSON definition file as the workflow's draft", _push, "file")
    pub = command("publish", "freeze the draft as the next version (moves the alias, default main)", _publish, "name")
    pub.add_argument("--alias", default="main")
    command("alias", "point an alias at a version", _alias, "name", "alias", "version")
    command("status", "deployment status, versions and aliases", _status, "name")
    command("ls", "the saved workflows", _ls)
    run = command("run", "execute ns/name[@alias|@vN] and print the result", _run, "ref")
    run.add_argument("--input", default="{}", help="the input as a JSON object")


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _push(args: argparse.Namespace, client: Any) -> None:
    text = Path(args.file).read_text()
    with client(args) as c:
        st = c.workflows.save(text)
    print(
        f"{st['name']}: draft saved (deployed: {st['deployed_version']}, "
        f"needs_redeployment: {st['needs_redeployment']})"
    )


def _publish(args: argparse.Namespace, client: Any) -> None:
    with client(args) as c:
        st = c.workflows.publish(args.name, alias=args.alias or None)
    print(
        f"{st['name']}: published v{st['published_version']}"
        + (f" ({args.alias} -> v{st['published_version']})" if args.alias else "")
    )


def _alias(args: argparse.Namespace, client: Any) -> None:
    with client(args) as c:
        c.workflows.set_alias(args.name, args.alias, int(str(args.version).lstrip("v")))
    print(f"{args.name}@{args.alias} -> v{str(args.version).lstrip('v')}")


def _status(args: argparse.Namespace, client: Any) -> None:
    with client(args) as c:
        st = c.workflows.status(args.name)
    _print(
        {
            k: st[k]
            for k in (
                "name",
                "is_deployed",
                "deployed_at",
                "deployed_version",
                "needs_redeployment",
                "aliases",
                "versions",
            )
        }
    )


def _ls(args: argparse.Namespace, client: Any) -> None:
    with client(args) as c:
        for w in c.workflows.list():
            print(
                f"{w['name']}\tdeployed=v{w['deployed_version']}\taliases={w['aliases']}\tneeds_redeployment={w['needs_redeployment']}"
            )


def _run(args: argparse.Namespace, client: Any) -> None:
    with client(args) as c:
        _print(c.workflows.execute(args.ref, json.loads(args.input)))
