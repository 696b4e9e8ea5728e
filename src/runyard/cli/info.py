"""``runyard models | status | usage | inferences ls|get``: what the gateway serves and has served."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_client_args, add_json_flag, client_for, leaf, print_json, print_table

__all__ = ["register"]


def register(sub: Any) -> None:
    for cmd in (
        leaf(sub, "models", _models, "the models the gateway serves (GET /v1/models)"),
        leaf(sub, "status", _status, "routes' circuit breakers, the cache and the recorder (GET /v1/status)"),
    ):
        add_json_flag(cmd)
        add_client_args(cmd)

    usage = leaf(sub, "usage", _usage, "requests, tokens and cost per group (GET /v1/usage)")
    usage.add_argument("--group-by", default="key,model,day", help="comma-separated: key, model, day, provider")
    usage.add_argument("--since", help="ISO date or time (UTC)")
    usage.add_argument("--until", help="ISO date or time (UTC)")
    usage.add_argument("--key", help="only this key id")
    add_json_flag(usage)
    add_client_args(usage)

    inf = leaf(sub, "inferences", None, "recorded inferences")
    inf_sub = inf.add_subparsers(title="inferences commands", metavar="COMMAND")
    ils = leaf(inf_sub, "ls", _inferences_ls, "recent inferences, newest first")
    ils.add_argument("--limit", type=int, default=20)
    ils.add_argument("--after", help="the last id of the previous page")
    for name in ("model", "provider", "kind", "status"):
        ils.add_argument(f"--{name}", help=f"only this {name}")
    iget = leaf(inf_sub, "get", _inferences_get, "one inference with its input, output and feedback")
    iget.add_argument("inference_id")
    for cmd in (ils, iget):
        add_json_flag(cmd)
        add_client_args(cmd)


def _models(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        models = client.request("GET", "/v1/models")["data"]
    if args.json:
        print_json(models)
        return
    print_table(("model", "provider"), [(m["id"], m["owned_by"]) for m in models])


def _status(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        status = client.request("GET", "/v1/status")
    print_json(status)  # nested by nature: JSON with or without --json


def _usage(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        report = client.usage(group_by=args.group_by, since=args.since, until=args.until, key=args.key)
    if args.json:
        print_json(report.model_dump())
        return
    groups = list(report.group_by)
    measures = ("requests", "input_tokens", "output_tokens", "cost", "errors")
    rows = [[*(row.get(g) for g in groups), *(row.get(m) for m in measures)] for row in report.data]
    rows.append(["total", *([""] * (len(groups) - 1)), *(report.total.get(m) for m in measures)])
    print_table((*groups, *measures), rows)


def _inferences_ls(args: argparse.Namespace) -> None:
    params = {k: v for k in ("limit", "model", "provider", "kind", "status") if (v := getattr(args, k))}
    if args.after:
        params["cursor"] = args.after  # the last id of the previous page
    with client_for(args) as client:
        page = client.request("GET", "/v1/inferences", params=params)
    if args.json:
        print_json(page)
        return
    cols = ("id", "created_at", "kind", "model", "provider", "status", "input_tokens", "output_tokens", "latency_ms")
    print_table(cols, [[row.get(c) for c in cols] for row in page["data"]])
    if page.get("next_cursor"):
        print(f"more: --after {page['next_cursor']}")


def _inferences_get(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        print_json(client.request("GET", f"/v1/inferences/{args.inference_id}"))
