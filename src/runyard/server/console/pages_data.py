"""Overview, Inferences and Usage pages: what the gateway answered, what it cost."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ...backends.usage import GROUPS, aggregate, key_names
from ...errors import InvalidRequestError, RunyardError
from ..access import scope_workspace
from ..http import gateway
from ..routes.inferences import InferenceFilter, list_inferences, page_limit
from ..routes.native import _inference
from ..routes.usage import _time
from . import queries, svg
from .gate import form_handler, redirect
from .render import SECURITY_HEADERS, error_page, render

KINDS = ("chat", "embed", "tts", "asr", "image", "vision")
MAX_KEY_CHOICES = 500  # the key filter's choices (newest); any id still works typed in the URL


def _top(rows: list[dict[str, Any]], field: str, names: dict[str, Any] | None = None) -> list[tuple[str, float]]:
    ranked = sorted(rows, key=lambda r: r["requests"], reverse=True)[:6]
    out = []
    for row in ranked:
        label = row[field] or "(none)"
        if names is not None:
            label = (names.get(row[field]) or {}).get("name") or label
        out.append((str(label), float(row["requests"])))
    return out


async def overview(request: Request) -> Response:
    gw = gateway(request)
    if gw.recorder is not None:
        await gw.recorder.flush()
    workspace = scope_workspace(request)
    now = datetime.now(timezone.utc)
    windows = {}
    for name, span in (("hour", timedelta(hours=1)), ("day", timedelta(days=1))):
        since = now - span
        total = (await aggregate(gw.store, [], since=since, workspace=workspace)) or [{}]
        windows[name] = {**total[0], **await queries.latency_percentiles(gw.store, since, workspace)}
    day = now - timedelta(days=1)
    by_model = await aggregate(gw.store, ["model"], since=day, workspace=workspace)
    by_key = await aggregate(gw.store, ["key"], since=day, workspace=workspace)
    names = await key_names(gw.store, [r["key"] for r in by_key if r["key"]])
    ops: dict[str, Any] | None = None
    if request.scope["state"].get("console_admin"):
        circuits = gw.ai.status()["circuits"]
        ops = {
            "queues": await queries.queue_depth(gw.store),
            "workers": await queries.live_workers(gw.store),
            "in_process_worker": gw.worker is not None,
            "breakers_open": sorted(r for r, s in circuits.items() if s["state"] == "open"),
            "breakers": len(circuits),
            "recorder": gw.recorder.stats() if gw.recorder is not None else None,
        }
    return render(
        request,
        "overview.html",
        windows=windows,
        series={w: await queries.timeline(gw.store, w, workspace) for w in ("hour", "day")},
        top_models=svg.bars(_top(by_model, "model")),
        top_keys=svg.bars(_top(by_key, "key", names)),
        queue_bars=svg.bars(sorted(ops["queues"].items()) if ops else []),
        ops=ops,
    )


async def inference_list(request: Request) -> Response:
    gw = gateway(request)
    q = request.query_params
    try:
        filters = InferenceFilter.from_query(q)
        limit = page_limit(q.get("limit"))
    except RunyardError as err:
        return error_page(request, err)
    if gw.recorder is not None:
        await gw.recorder.flush()
    cursor = q.get("cursor") or None
    page = await list_inferences(gw.store, filters, workspace=scope_workspace(request), limit=limit, cursor=cursor)
    names = await key_names(gw.store, list({r["api_key_id"] for r in page["data"] if r["api_key_id"]}))
    workspace = scope_workspace(request)
    keys = [k for k in await gw.store.list_api_keys() if workspace is None or k["workspace"] == workspace]
    return render(
        request,
        "inferences.html",
        page=page,
        filters=filters.as_query(),
        kinds=KINDS,
        names=names,
        keys=keys[-MAX_KEY_CHOICES:],
        next_query={**filters.as_query(), "cursor": page["next_cursor"]} if page["next_cursor"] else None,
    )


async def inference_detail(request: Request) -> Response:
    gw = gateway(request)
    row = await _inference(request, request.path_params["inference_id"])
    assert row is not None
    feedback = await gw.store.list_feedback(row["id"])
    names = await key_names(gw.store, [row["api_key_id"]] if row.get("api_key_id") else [])
    metrics = ["comment", "demonstration", *sorted(gw.config.metrics)]
    return render(
        request,
        "inference.html",
        inf=row,
        feedback=feedback,
        key_name=(names.get(row.get("api_key_id") or "") or {}).get("name"),
        metrics=metrics,
        metric_types={name: m.type for name, m in gw.config.metrics.items()},
        note=request.query_params.get("note"),
    )


def _feedback_value(raw: str, metric_type: str | None, metric: str) -> Any:
    if metric_type == "boolean" or (metric_type is None and metric not in ("comment", "demonstration")):
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise InvalidRequestError(f"metric {metric!r} takes true or false", code="invalid_feedback_value")
    if metric_type == "float":
        try:
            return float(raw)
        except ValueError:
            raise InvalidRequestError(f"metric {metric!r} takes a number", code="invalid_feedback_value") from None
    return raw


@form_handler
async def add_feedback(request: Request, form: FormData) -> Response:
    gw = gateway(request)
    row = await _inference(request, request.path_params["inference_id"])  # 404 for another workspace's
    assert row is not None
    metric = str(form.get("metric") or "")
    metric_config = gw.config.metrics.get(metric)
    value = _feedback_value(str(form.get("value") or ""), metric_config.type if metric_config else None, metric)
    if metric_config is not None and metric_config.level == "episode":
        await gw.feedback.submit(metric, value, episode_id=row["episode_id"])
    else:
        await gw.feedback.submit(metric, value, inference_id=row["id"])
    return redirect(f"/ui/inferences/{row['id']}?note=feedback+saved")


def _usage_query(request: Request) -> tuple[list[str], datetime | None, datetime | None]:
    q = request.query_params
    group = q.get("group_by") or "day"
    if group not in GROUPS:
        raise InvalidRequestError(f"group_by is one of {', '.join(GROUPS)}", code="invalid_group_by")
    since = _time(q.get("since"), "since") or datetime.now(timezone.utc) - timedelta(days=30)
    return [group], since, _time(q.get("until"), "until")


async def _usage_rows(request: Request) -> tuple[str, list[dict[str, Any]], datetime | None]:
    gw = gateway(request)
    if gw.recorder is not None:
        await gw.recorder.flush()
    groups, since, until = _usage_query(request)
    rows = await aggregate(gw.store, groups, since=since, until=until, workspace=scope_workspace(request))
    if groups == ["key"]:
        names = await key_names(gw.store, [r["key"] for r in rows if r["key"]])
        for row in rows:
            row["key_name"] = (names.get(row["key"]) or {}).get("name")
    return groups[0], rows, since


async def usage(request: Request) -> Response:
    try:
        group, rows, since = await _usage_rows(request)
    except RunyardError as err:
        return error_page(request, err)

    def label(row: dict[str, Any]) -> str:
        return str(row.get("key_name") or row[group] or "(none)")

    ordered = rows if group == "day" else sorted(rows, key=lambda r: r["requests"], reverse=True)
    return render(
        request,
        "usage.html",
        group=group,
        groups=("day", "model", "key", "provider"),
        rows=ordered,
        since=since,
        label=label,
        token_bars=svg.bars([(label(r), float(r["input_tokens"] + r["output_tokens"])) for r in ordered[:30]]),
        cost_bars=svg.bars([(label(r), float(r["cost"] or 0)) for r in ordered[:30]], unit=" $"),
        query=request.url.query,
    )


async def usage_csv(request: Request) -> Response:
    """The Usage page's rows as CSV (a download)."""
    try:
        group, rows, _ = await _usage_rows(request)
    except RunyardError as err:
        return error_page(request, err)
    out = io.StringIO()
    columns = [group, *(["key_name"] if group == "key" else []), "requests", "input_tokens", "output_tokens"]
    columns += ["cached_tokens", "reasoning_tokens", "cost", "cache_hits", "errors"]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_safe(v) for k, v in row.items()})
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="runyard-usage-by-{group}.csv"'}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def _csv_safe(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula gets a leading quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


routes_spec = [
    ("/", overview, ["GET"]),
    ("/inferences", inference_list, ["GET"]),
    ("/inferences/{inference_id}", inference_detail, ["GET"]),
    ("/inferences/{inference_id}/feedback", add_feedback, ["POST"]),
    ("/usage", usage, ["GET"]),
    ("/usage.csv", usage_csv, ["GET"]),
]
