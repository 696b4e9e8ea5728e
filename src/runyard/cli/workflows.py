"""``runyard workflows push|validate|publish|alias|status|ls|run``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import CliError, add_client_args, add_json_flag, client_for, leaf, print_json, print_table, read_text_file

__all__ = ["register"]


def register(sub: Any) -> None:
    wf = leaf(sub, "workflows", None, "workflows: push a definition, publish versions, move aliases")
    wsub = wf.add_subparsers(title="workflows commands", metavar="COMMAND")

    def command(name: str, helptext: str, func: Any, *positional: str) -> argparse.ArgumentParser:
        p = leaf(wsub, name, func, helptext)
        for arg in positional:
            p.add_argument(arg)
        add_client_args(p)
        return p

    command("push", "save a YAML/JSON definition file as the workflow's draft", _push, "file")
    command("validate", "can the stored workflow run as it stands? (exit 1 if not)", _validate, "ref")
    pub = command("publish", "freeze the draft as the next version (moves the alias, default main)", _publish, "name")
    pub.add_argument("--alias", default="main")
    command("alias", "point an alias at a version", _alias, "name", "alias", "version")
    add_json_flag(command("status", "deployment status, versions and aliases", _status, "name"))
    add_json_flag(command("ls", "the saved workflows", _ls))
    run = command("run", "execute ns/name[@alias|@vN] and print the result (exit 1 if it fails)", _run, "ref")
    run.add_argument("--input", default="{}", help="the input as a JSON object")


def _push(args: argparse.Namespace) -> None:
    text = read_text_file(args.file)
    with client_for(args) as c:
        st = c.workflows.save(text)
    print(
        f"{st['name']}: draft saved (deployed: {st['deployed_version']}, "
        f"needs_redeployment: {st['needs_redeployment']})"
    )


def _validate(args: argparse.Namespace) -> None:
    with client_for(args) as c:
        result = c.workflows.validate(args.ref)
    print_json(result)
    if not result.get("valid"):
        problems = "; ".join(f"{p.get('block')}: {p.get('message')}" for p in result.get("problems") or [])
        raise CliError(f"{args.ref} is not valid: {problems}")


def _publish(args: argparse.Namespace) -> None:
    with client_for(args) as c:
        st = c.workflows.publish(args.name, alias=args.alias or None)
    print(
        f"{st['name']}: published v{st['published_version']}"
        + (f" ({args.alias} -> v{st['published_version']})" if args.alias else "")
    )


def _alias(args: argparse.Namespace) -> None:
    version = str(args.version).lstrip("v")
    if not version.isdigit():
        raise CliError(f"version must be a number like 3 or v3, not {args.version!r}", 2)
    with client_for(args) as c:
        c.workflows.set_alias(args.name, args.alias, int(version))
    print(f"{args.name}@{args.alias} -> v{version}")


def _status(args: argparse.Namespace) -> None:
    with client_for(args) as c:
        st = c.workflows.status(args.name)
    if args.json:
        print_json(st)
        return
    keys = ("name", "is_deployed", "deployed_at", "deployed_version", "needs_redeployment", "aliases", "versions")
    print_json({k: st.get(k) for k in keys})


def _ls(args: argparse.Namespace) -> None:
    with client_for(args) as c:
        workflows = c.workflows.list()
    if args.json:
        print_json(workflows)
        return
    rows = [(w["name"], w["deployed_version"], w["aliases"], w["needs_redeployment"]) for w in workflows]
    print_table(("workflow", "deployed version", "aliases", "needs redeployment"), rows)


def _run(args: argparse.Namespace) -> None:
    try:
        payload = json.loads(args.input)
    except ValueError as err:
        raise CliError(f"--input is not valid JSON: {err}", 2) from None
    if not isinstance(payload, dict):
        raise CliError("--input must be a JSON object", 2)
    with client_for(args) as c:
        result = c.workflows.execute(args.ref, payload)
    print_json(result)
    if not result.get("success", True):
        error = result.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        raise CliError(f"workflow {args.ref} failed: {message}")
