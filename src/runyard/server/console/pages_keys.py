"""Keys page (config keys only): create a store key, see its usage against its limits, revoke it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ...backends.limits import period_bounds
from ...backends.usage import key_spend
from ...services.auth import KeyLimits, create_key, revoke_key
from ..http import gateway, validation_error
from .gate import form_handler, redirect, require_admin
from .render import render

LIMIT_FIELDS = ("rpm_sync", "rpm_async", "tpm", "spend_limit", "period")
MAX_KEYS_SHOWN = 500


async def _usage(request: Request, rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Spend and tokens this month and today per active key (one aggregate query per key)."""
    store = gateway(request).store
    now = datetime.now(timezone.utc).timestamp()
    month = datetime.fromtimestamp(period_bounds("month", now)[1], timezone.utc)
    day = datetime.fromtimestamp(period_bounds("day", now)[1], timezone.utc)
    out = {}
    for row in rows:
        if row["revoked_at"] is None:
            m_cost, d_cost, m_tokens, d_tokens = await key_spend(store, row["id"], month, day)
            out[row["id"]] = {
                "month_cost": m_cost,
                "day_cost": d_cost,
                "month_tokens": m_tokens,
                "day_tokens": d_tokens,
            }
    return out


async def key_list(
    request: Request, *, created: tuple[str, dict[str, Any]] | None = None, error: Any = None
) -> Response:
    require_admin(request)
    gw = gateway(request)
    if gw.recorder is not None:
        await gw.recorder.flush()  # spend includes what was just answered
    rows = (await gw.store.list_api_keys())[-MAX_KEYS_SHOWN:]
    rows.reverse()  # newest first
    return render(
        request,
        "keys.html",
        status=400 if error else 200,
        keys=rows,
        usage=await _usage(request, rows),
        created=created,
        error=error,
        auth_on=gateway(request).auth.enabled,
    )


async def keys_page(request: Request) -> Response:
    """The list; right after a create, the new key's secret (once: a reload no longer shows it)."""
    session = request.scope["state"].get("console_session")
    created, session.flash = session.flash, None
    return await key_list(request, created=created)


@form_handler
async def key_create(request: Request, form: FormData) -> Response:
    require_admin(request)
    data: dict[str, Any] = {"name": str(form.get("name") or "").strip()}
    workspace = str(form.get("workspace") or "").strip()
    if workspace:
        data["workspace"] = workspace
    for name in LIMIT_FIELDS:
        value = str(form.get(name) or "").strip()
        if value:
            data[name] = value
    try:
        spec = KeyLimits.model_validate(data)
    except PydanticValidationError as err:
        return await key_list(request, error=validation_error(err))
    gw = gateway(request)
    secret, row = await create_key(gw.store, gw.auth, spec)
    request.scope["state"]["console_session"].flash = (secret, row)
    return redirect("/ui/keys")  # a reload re-submits nothing


@form_handler
async def key_revoke(request: Request, _form: FormData) -> Response:
    require_admin(request)
    gw = gateway(request)
    await revoke_key(gw.store, gw.auth, request.path_params["key_id"])
    return redirect("/ui/keys")


routes_spec = [
    ("/keys", keys_page, ["GET"]),
    ("/keys", key_create, ["POST"]),
    ("/keys/{key_id}/revoke", key_revoke, ["POST"]),
]
