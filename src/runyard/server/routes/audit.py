"""``GET /v1/audit``: the audit log, for admins (a config key; anyone when keys are off)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import PermissionDeniedError
from ...services.audit import MAX_PAGE, AuditLog
from ..http import gateway, json_response, validate
from ..openapi import ANY_OBJECT, Operation, Param


class AuditQuery(BaseModel):
    """The query string of ``GET /v1/audit`` (validated here, described in the spec)."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=MAX_PAGE)
    action: str | None = Field(default=None, max_length=64)
    since: datetime | None = None


def actor(request: Request) -> str:
    """Who is calling, for an audit entry: ``key:<id>`` or ``anonymous`` (keys off)."""
    key_id = (request.scope.get("state") or {}).get("api_key_id")
    return f"key:{key_id}" if key_id else "anonymous"


async def audit(
    request: Request,
    action: str,
    *,
    target: str | None = None,
    workspace: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record ``action`` by the caller (ids and names only, never a secret); ``workspace``
    defaults to the caller's own."""
    if workspace is None:
        key = (request.scope.get("state") or {}).get("api_key")
        workspace = None if key is None or key.admin else key.workspace
    log = AuditLog(gateway(request).store)
    await log.record(action, actor=actor(request), target=target, workspace=workspace, details=details)


async def list_audit(request: Request) -> Response:
    key = (request.scope.get("state") or {}).get("api_key")
    if key is not None and not key.admin:
        raise PermissionDeniedError("the audit log is for admin keys", code="admin_only")
    query = validate(AuditQuery, dict(request.query_params))
    entries = await AuditLog(gateway(request).store).entries(limit=query.limit, action=query.action, since=query.since)
    return json_response({"object": "list", "data": entries})


routes = [Route("/v1/audit", list_audit, methods=["GET"])]
operations = [
    Operation(
        "GET",
        "/v1/audit",
        "The audit log (admins): who did what, when",
        "admin",
        "listAudit",
        response=ANY_OBJECT,
        params=(
            Param("limit", schema=AuditQuery.model_json_schema()["properties"]["limit"]),
            Param("action", schema={"type": "string", "maxLength": 64}),
            Param("since", schema={"type": "string", "format": "date-time"}),
        ),
    )
]
