"""Store API keys over HTTP (admin only): ``POST/GET /v1/keys``, ``DELETE /v1/keys/{id}``.

The HTTP form of ``runyard keys create|list|revoke``: a created key's secret is in the answer
once (only its hash is stored); a revoked key is refused by this server at once (and by the
others sharing the store within ``server.api_key_refresh_s``). Only a config key
(``server.api_keys``) may call these — a store key gets 403 ``admin_required``; with no keys
configured at all the server is open, and so are these.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import PermissionDeniedError
from ...services.auth import KeyLimits, create_key, revoke_key
from ..access import caller
from ..http import gateway, json_response, read_object, validate
from ..openapi import ANY_OBJECT, Operation, Param
from .audit import audit


def require_admin(request: Request) -> None:
    """403 ``admin_required`` unless the caller is a config key (or auth is off)."""
    key = caller(request)
    if key is not None and not key.admin:
        raise PermissionDeniedError("managing keys needs a config (admin) key", code="admin_required")


def key_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "key_hash"}
    for name in ("created_at", "revoked_at"):
        if out.get(name) is not None:
            out[name] = out[name].isoformat()
    return {"object": "api_key", **out}


async def keys_create(request: Request) -> Response:
    require_admin(request)
    spec = validate(KeyLimits, await read_object(request))
    gw = gateway(request)
    secret, row = await create_key(gw.store, gw.auth, spec)
    details = {"name": row.get("name")}
    await audit(request, "key.created", target=str(row["id"]), workspace=row.get("workspace"), details=details)
    return json_response({**key_json(row), "key": secret}, status=201)


async def keys_list(request: Request) -> Response:
    require_admin(request)
    active = request.query_params.get("active") == "true"
    rows = await gateway(request).store.list_api_keys(include_revoked=not active)
    return json_response({"object": "list", "data": [key_json(r) for r in rows]})


async def keys_revoke(request: Request) -> Response:
    require_admin(request)
    gw = gateway(request)
    row = await revoke_key(gw.store, gw.auth, request.path_params["key_id"])
    details = {"name": row.get("name")}
    await audit(request, "key.revoked", target=str(row["id"]), workspace=row.get("workspace"), details=details)
    return json_response(key_json(row))


routes = [
    Route("/v1/keys", keys_create, methods=["POST"]),
    Route("/v1/keys", keys_list, methods=["GET"]),
    Route("/v1/keys/{key_id}", keys_revoke, methods=["DELETE"]),
]

# The API description (server/openapi): one declaration per route.
_ADMIN = " (a config key only: a store key gets 403 `admin_required`)"
operations = [
    Operation(
        "POST",
        "/v1/keys",
        "Create a store API key; its secret (`key`) is in this answer only" + _ADMIN,
        "keys",
        "createKey",
        body=KeyLimits,
        response=ANY_OBJECT,
        status=201,
        links={"RevokeKey": {"operationId": "revokeKey", "parameters": {"key_id": "$response.body#/id"}}},
    ),
    Operation(
        "GET",
        "/v1/keys",
        "Store API keys (never their secrets)" + _ADMIN,
        "keys",
        "listKeys",
        response=ANY_OBJECT,
        params=(Param("active", schema={"enum": ["true", "false"]}, description="`true`: leave revoked keys out"),),
    ),
    Operation(
        "DELETE", "/v1/keys/{key_id}", "Revoke a store API key" + _ADMIN, "keys", "revokeKey", response=ANY_OBJECT
    ),
]
