"""Workflows and Agents pages: versions, aliases, the DAG, run waterfalls; chats and approvals."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ...agents.chats import AWAIT_APPROVAL
from ...errors import InvalidRequestError, NotFoundError, RunyardError
from ...services.agents import AgentService
from ...services.namespaces import namespace_of
from ...services.workflows import WORKFLOW_APP
from ...workflows import validate_definition
from ..access import check_chat, path_task_id, scope_workspace
from ..http import gateway
from ..routes.audit import audit
from . import queries, svg
from .gate import form_handler, redirect
from .render import render

RUNS_SCANNED = 200  # a workflow's recent runs are found among this many latest workflow tasks


async def workflow_list(request: Request) -> Response:
    flows = await gateway(request).workflows.list_all(viewer=scope_workspace(request))
    return render(request, "workflows.html", flows=flows[:500])


async def _runs_of(request: Request, name: str, limit: int = 20) -> list[dict[str, Any]]:
    page = await gateway(request).tasks.list_tasks(
        app=WORKFLOW_APP, limit=RUNS_SCANNED, workspace=scope_workspace(request)
    )
    return [t for t in page["data"] if (t.get("input") or {}).get("workflow") == name][:limit]


async def workflow_detail(request: Request) -> Response:
    name = request.query_params.get("name") or ""
    service = gateway(request).workflows
    viewer = scope_workspace(request)
    status = await service.status(name, viewer=viewer)  # 404 workflow_not_found (also another workspace's)
    shown = request.query_params.get("version")
    if shown and shown.isdigit():
        resolved = await service.resolve(name, int(shown), viewer=viewer)
        definition, label = resolved.definition, f"v{resolved.version}"
    else:
        definition, label = status["draft"], "draft"
    checked, _ = validate_definition({k: v for k, v in definition.items() if not k.startswith("_")})
    blocks = checked.get("blocks") or []
    return render(
        request,
        "workflow.html",
        wf=status,
        label=label,
        description=definition.get("description") or "",
        graph=svg.dag(blocks, checked.get("_deps") or {}),
        blocks=blocks,
        runs=await _runs_of(request, name),
        note=request.query_params.get("note"),
    )


@form_handler
async def move_alias(request: Request, form: FormData) -> Response:
    name, alias = str(form.get("name") or ""), str(form.get("alias") or "").strip()
    raw = str(form.get("version") or "").lstrip("v")
    if form.get("confirm") != "yes":
        raise InvalidRequestError("moving an alias needs confirmation", code="confirmation_required")
    if not alias or len(alias) > 64 or not raw.isdigit():
        raise InvalidRequestError("give an alias and a version number", code="invalid_alias")
    await gateway(request).workflows.set_alias(name, alias, int(raw), viewer=scope_workspace(request))
    await audit(request, "workflow.alias_moved", target=name, details={"alias": alias, "version": int(raw)})
    note = f"{alias} now points to v{raw}"
    return redirect("/ui/workflow?" + urlencode({"name": name, "note": note}))


async def _result_of(request: Request, task_id: str) -> dict[str, Any] | None:
    """A workflow run's full result: the last ``workflow`` event of its task."""
    events = await gateway(request).tasks.queue.events(task_id, types=("workflow",))
    for event in reversed(events):
        data = event.data or {}
        if data.get("event") == "result":
            result: dict[str, Any] = data.get("result") or {}
            return result
    return None


async def run_detail(request: Request) -> Response:
    task_id = await path_task_id(request)
    gw = gateway(request)
    task = await gw.tasks.get(task_id)
    if not task["app"].startswith(WORKFLOW_APP + "@"):
        raise NotFoundError(f"workflow run {task_id} not found", code="run_not_found")
    run_input = task.get("input") or {}
    blocks: dict[str, Any] = {}
    try:
        resolved = await gw.workflows.resolve(run_input.get("workflow", ""), run_input.get("version"))
        blocks = {b["id"]: b for b in resolved.definition.get("blocks") or []}
    except RunyardError:
        pass  # the workflow was deleted: the spans still show
    result = await _result_of(request, task_id)
    spans = (result or {}).get("trace_spans") or []
    return render(
        request,
        "run.html",
        task=task,
        run_input=run_input,
        result=result,
        spans=spans,
        blocks=blocks,
        chart=svg.waterfall(spans),
    )


def _agents(request: Request) -> AgentService:
    agents: AgentService = gateway(request).agents
    return agents


async def agent_list(request: Request) -> Response:
    q = request.query_params
    awaiting = q.get("awaiting") == "1"
    store, viewer = gateway(request).store, scope_workspace(request)
    namespaces = _agents(request).chats.namespaces
    templates = [
        t
        for t in await queries.agent_template_list(store)
        if namespaces.readable(viewer, namespace_of(t["name"]), t["workspace"])
    ]
    chats = await queries.chat_page(
        store, workspace=scope_workspace(request), awaiting=awaiting, cursor=q.get("cursor") or None
    )
    return render(
        request,
        "agents.html",
        templates=templates,
        chats=chats,
        awaiting=awaiting,
        next_query={"awaiting": "1" if awaiting else "", "cursor": chats["next_cursor"]},
    )


async def agent_detail(request: Request) -> Response:
    name = f"{request.path_params['ns']}/{request.path_params['name']}"
    versions = await _agents(request).list_versions(name, viewer=scope_workspace(request))
    if not versions:
        raise NotFoundError(f"agent {name!r} not found", code="agent_not_found")
    chats = await queries.chat_page(gateway(request).store, workspace=scope_workspace(request), agent=name, limit=20)
    return render(request, "agent.html", name=name, versions=versions, chats=chats)


async def chat_detail(request: Request) -> Response:
    chat = await _agents(request).get_chat(request.path_params["chat_id"])
    await check_chat(request, chat)
    return render(request, "chat.html", chat=chat, awaiting=AWAIT_APPROVAL, note=request.query_params.get("note"))


@form_handler
async def chat_approval(request: Request, form: FormData) -> Response:
    chat_id = request.path_params["chat_id"]
    svc = _agents(request)
    chat = await svc.get_chat(chat_id)
    await check_chat(request, chat)
    call_id = str(form.get("call_id") or "")
    decision = form.get("decision")
    if decision not in ("approve", "deny"):
        raise InvalidRequestError("decision is approve or deny", code="invalid_approval")
    key = request.scope["state"].get("api_key")
    by = key.name if key is not None else "console"
    reason = str(form.get("reason") or "") or None
    approved = decision == "approve"
    await svc.decide(chat_id, call_id, approved, by=by, reason=reason, api_key_id=key.id if key else None)
    details = {"chat_id": chat_id, "call_id": call_id, "approved": approved, "by": by, "reason": reason}
    await audit(request, "approval.given", target=call_id, details=details)
    return redirect(
        f"/ui/chats/{quote(chat_id)}?note=" + quote(f"{'approved' if decision == 'approve' else 'denied'} {call_id}")
    )


routes_spec = [
    ("/workflows", workflow_list, ["GET"]),
    ("/workflow", workflow_detail, ["GET"]),
    ("/workflow/alias", move_alias, ["POST"]),
    ("/runs/{task_id}", run_detail, ["GET"]),
    ("/agents", agent_list, ["GET"]),
    ("/agents/{ns}/{name}", agent_detail, ["GET"]),
    ("/chats/{chat_id}", chat_detail, ["GET"]),
    ("/chats/{chat_id}/approval", chat_approval, ["POST"]),
]
