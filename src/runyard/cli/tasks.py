"""``runyard run``, ``runyard tasks ls|get|cancel``, ``runyard apps ls``."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CliError, add_client_args, add_json_flag, client_for, leaf, parse_inputs, print_json, print_table

__all__ = ["register"]


def register(sub: Any) -> None:
    run = leaf(sub, "run", _run, "run an app and show its progress")
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
    run.add_argument(
        "--cancel-on-interrupt", action="store_true", help="Ctrl-C cancels the task (default: it keeps running)"
    )
    add_client_args(run)

    tasks = leaf(sub, "tasks", None, "list, show and cancel tasks")
    tasks_sub = tasks.add_subparsers(title="tasks commands", metavar="COMMAND")
    tls = leaf(tasks_sub, "ls", _tasks_ls, "recent tasks, newest first")
    tls.add_argument("--app")
    tls.add_argument("--status")
    tls.add_argument("--limit", type=int, default=20)
    tget = leaf(tasks_sub, "get", _tasks_get, "show a task")
    tcancel = leaf(tasks_sub, "cancel", _tasks_cancel, "cancel a task")
    for cmd in (tget, tcancel):
        cmd.add_argument("task_id")
    for cmd in (tls, tget, tcancel):
        add_json_flag(cmd)
        add_client_args(cmd)

    apps = leaf(sub, "apps", None, "the apps the gateway serves")
    apps_sub = apps.add_subparsers(title="apps commands", metavar="COMMAND")
    als = leaf(apps_sub, "ls", _apps_ls, "the apps the gateway serves")
    add_json_flag(als)
    add_client_args(als)


def _run(args: argparse.Namespace) -> None:
    payload = parse_inputs(args.input, args.json)
    with client_for(args) as client:
        task = client.run(args.app, payload, wait=False, session=args.session, pool=args.pool)
        if args.no_wait:
            print(task.id)
            return
        try:
            final = _follow(client, args.app, task.id)
        except KeyboardInterrupt:
            if args.cancel_on_interrupt:
                cancelled = client.tasks.cancel(task.id)
                raise CliError(f"interrupted: task {task.id} {cancelled.status} (cancel requested)", 130) from None
            raise CliError(
                f"interrupted: task {task.id} was not cancelled; follow it with `runyard tasks get {task.id}`, "
                f"cancel it with `runyard tasks cancel {task.id}` (or run with --cancel-on-interrupt)",
                130,
            ) from None
    if final is None:
        raise CliError(f"the event stream of task {task.id} ended early: `runyard tasks get {task.id}` shows it")
    if final["status"] != "completed":
        error = final.get("error") or {}
        raise CliError(f"task {final['id']} {final['status']}: {error.get('message', '')}")
    print_json(final["output"])


def _follow(client: Any, app: str, task_id: str) -> dict[str, Any] | None:
    """Show the task's progress on stderr until it ends; its final state (None if the stream ended early)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    final: dict[str, Any] | None = None
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"))
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True), transient=False) as bar:
        row = bar.add_task(app, total=1.0)
        for update in client.tasks.stream(task_id):
            if update.type == "log":
                bar.console.print(f"[dim]{update.message}[/dim]")
            elif update.type == "progress":
                text = f"{app}: {update.message}" if update.message else app
                bar.update(row, completed=update.progress or 0.0, description=text)
            elif update.type == "status":
                bar.update(row, description=f"{app} [{update.status}]")
                if update.task is not None:
                    final = update.task
        if final is not None and final["status"] == "completed":
            bar.update(row, completed=1.0)
    return final


def _tasks_ls(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        page = client.tasks.list(app=args.app, status=args.status, limit=args.limit)
    if args.json:
        print_json(page.data)
        return
    rows = [(t["id"], t["app"], t["status"], t["created_at"], t["duration_ms"]) for t in page.data]
    print_table(("id", "app", "status", "created", "duration ms"), rows)


def _tasks_get(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        print_json(client.tasks.get(args.task_id).to_dict())


def _tasks_cancel(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        task = client.tasks.cancel(args.task_id)
    if args.json:
        print_json(task.to_dict())
        return
    print(f"{task.id} {task.status}{' (cancel requested)' if task.to_dict().get('cancel_requested') else ''}")


def _apps_ls(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        apps = client.request("GET", "/v1/apps")["data"]
    if args.json:
        print_json(apps)
        return
    rows = []
    for a in apps:
        reqs = ", ".join(f"{r['type']}:{r['key']}" for r in a["requirements"])
        rows.append((a["name"], a["version"], a["kind"], reqs, (a["description"] or "").split("\n")[0]))
    print_table(("app", "latest", "kind", "requirements", "description"), rows)
