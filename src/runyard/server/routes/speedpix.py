"""The ``speedpix`` wire protocol (see shared/protocols/speedpix.md) over the workflow service.

Signed POSTs under ``/scc/``: each request's Aliyun API-Gateway HMAC-SHA256 signature is verified
(by the auth middleware, through :func:`authenticate`) against the app secret configured for its
``x-ca-key``::

    [apps.integrations.speedpix.apps]
    my-app = "secret"                                  # limits: the [limits] defaults
    other-app = { secret = "s2", api_key = "<key id>" }  # that API key's limits, usage and revocation

A bad or missing signature is 401, and so is a replay (a timestamp over 15 minutes from now, or a
nonce seen before); an app linked to a revoked key is 401; over a limit is 429 with
``Retry-After`` and ``X-RateLimit-*`` (as everywhere). Errors of a verified call are answered 200
with ``err_code`` (the client raises on any non-2xx). Uploads: the sign call hands out an
``upload_url`` (PUT, unsigned, expires) for a reserved file id; its ``access_url`` serves the
stored file and, passed back as a workflow input, is taken as that file (``runyard://files/<id>``).
Both are HMAC-signed for the app, so no server-side state is kept. Output ``runyard://files/<id>``
refs become URLs signed for the app that read the result. The doc's dict call form
(``run("wf", {"input": {...}, "alias_id": "main"})``) is unwrapped; ``resource_config_id``
("dedicated resources") picks a worker pool::

    [apps.integrations.speedpix.resources]
    gpu-a = "gpu"                                      # resource_config_id -> [pools.gpu]
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from ...backends.queue import TERMINAL
from ...backends.store import new_id
from ...errors import AuthenticationError, NotFoundError, RunyardError
from ...files import sanitize_filename
from ..downloads import file_response
from ..http import gateway, json_response, parse_object, read_body
from ..openapi import ANY_OBJECT, BINARY, ErrorShape, Operation
from ..protocols import speedpix as sp
from .workflows import _result

if TYPE_CHECKING:
    from ...gateway import Gateway
    from ...services.limits import Policy


async def authenticate(gw: Gateway, scope: Scope) -> tuple[str, str, Policy] | None:
    """For the auth middleware: (app key, key id for usage, limit policy) of a signed call;
    None for the unsigned upload and file URLs (their own signatures guard them)."""
    if scope["path"] not in sp.SIGNED_PATHS:
        return None
    app = await _verify(gw, Headers(scope=scope), scope["path"])
    if app.api_key_id is None:
        subject = "speedpix:" + app.key
        return app.key, subject, gw.limits.policy(subject)
    key = gw.auth.by_id(app.api_key_id)
    if key is None:
        raise AuthenticationError(f"the API key of app {app.key!r} is revoked or unknown", code="invalid_api_key")
    return app.key, key.id, key.policy


async def _verify(gw: Gateway, headers: Mapping[str, str], path: str) -> sp.SpeedPixApp:
    """:func:`sp.verify`, each nonce once across replicas when they share a guard (``[redis]``)."""
    app = sp.verify(headers, path, sp.apps_of(gw.config), local_nonces=gw.nonces is None)
    if gw.nonces is not None and not await gw.nonces.first_use(sp.nonce_of(headers), 2 * sp.SIGNATURE_WINDOW_S):
        raise AuthenticationError("request nonce is missing or was used already", code="nonce_reused")
    return app


async def _signed_body(request: Request) -> dict[str, Any]:
    state = request.scope.get("state") or {}
    if "signed_caller" in state:  # verified by the auth middleware (authenticate below)
        request.state.speedpix_key = state["signed_caller"]
    else:
        request.state.speedpix_key = (await _verify(gateway(request), request.headers, request.url.path)).key
    raw = await read_body(request)
    return parse_object(raw) if raw.strip() else {}


def _fail(err: RunyardError) -> Response:
    return json_response(sp.failure(err))


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def comfy_prompt(request: Request) -> Response:
    body = await _signed_body(request)
    gw = gateway(request)
    try:
        workflow = str(body.get("workflow_id") or "")
        if isinstance(body.get("inputs"), dict) and "input" in body["inputs"]:
            draft = (await gw.workflows.status(workflow))["draft"]  # 404 workflow_not_found
            body = sp.unwrap_call(body, sp.declared_inputs(draft))
        version = body.get("version_id")
        alias = body.get("alias_id") or "main"
        ref = workflow if version else f"{workflow}@{alias}"
        resource = body.get("resource_config_id") or request.headers.get("x-sp-resource-config-id")
        pool = sp.pool_for(resource, sp.resources_of(gw.config))
        inputs = body.get("inputs") or {}
        if not isinstance(inputs, dict):
            inputs = {"input": inputs}
        inputs = sp.own_file_refs(inputs, _base(request), sp.apps_of(gw.config))
        state = request.scope.get("state") or {}
        task = await gw.workflows.submit(
            ref, inputs, version=version or None, api_key_id=state.get("api_key_id"), pool=pool
        )
    except RunyardError as err:
        return _fail(err)
    data = {"task_id": task["id"], "status": "waiting"}
    estimate = await gw.workflows.estimated_duration(workflow)
    if estimate is not None:
        data["estimated_duration_in_seconds"] = round(estimate / 1000, 3)
    return json_response(sp.answer(data))


async def _task(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """The task, if the calling app submitted it (under its linked key or its own identity);
    anyone else's is ``task_not_found``, as an unknown id is."""
    task_id = str(body.get("taskId") or body.get("task_id") or "")
    tasks = gateway(request).tasks
    row = await tasks.queue.get(task_id)
    caller = (request.scope.get("state") or {}).get("api_key_id")
    if row is None or (caller is not None and row.api_key_id != caller):
        raise NotFoundError(f"task {task_id} not found", code="task_not_found")
    return tasks.render(row, [])  # the protocol carries no logs


async def get_progress(request: Request) -> Response:
    body = await _signed_body(request)
    try:
        task = await _task(request, body)
    except RunyardError as err:
        return _fail(err)
    terminal = task["status"] in TERMINAL
    result = await _result(request, task) if terminal else None
    return json_response(sp.answer(sp.progress(task, result, terminal)))


async def get_result(request: Request) -> Response:
    body = await _signed_body(request)
    try:
        task = await _task(request, body)
    except RunyardError as err:
        return _fail(err)
    result = await _result(request, task)
    if result is None:
        return json_response(sp.answer({"task_id": task["id"]}, 1, "NotFinished"))
    if not result.get("success"):
        return json_response(sp.task_failed(task["id"], result))
    output = result.get("output")
    app = sp.apps_of(gateway(request).config)[request.state.speedpix_key]
    signed = sp.signed_urls(output if isinstance(output, dict) else {"output": output}, _base(request), app)
    return json_response(sp.answer({"task_id": task["id"], "result": signed}, 10, api_invoke_id=task["id"]))


async def upload_sign(request: Request) -> Response:
    body = await _signed_body(request)
    key = request.state.speedpix_key
    secret = sp.apps_of(gateway(request).config)[key].secret
    file_id = str(new_id())
    expires = int(time.time()) + sp.UPLOAD_TTL_S
    name = sanitize_filename(body.get("originalFilename"), default="file")
    base = f"{_base(request)}/scc/uploads/{key}/{file_id}"
    put_sig = sp.sign(secret, "put", file_id, str(expires))
    data = {
        "upload_url": f"{base}/{expires}/{put_sig}?{urlencode({'filename': name})}",
        "access_url": f"{base}/{sp.sign(secret, 'get', file_id)}",
        "object_key": file_id,
        "path": f"uploads/{file_id}/{name}",
        "expire_time": sp.UPLOAD_TTL_S,
    }
    return json_response(sp.answer(data))


def _check(request: Request, purpose: str, *parts: str) -> str:
    """The file id of a signed upload/file URL (404 when the signature does not match)."""
    p = request.path_params
    app = sp.apps_of(gateway(request).config).get(p["key"])
    if app is None or not hmac.compare_digest(sp.sign(app.secret, purpose, p["file_id"], *parts), p["sig"]):
        raise NotFoundError("file not found", code="file_not_found")
    return str(p["file_id"])


async def upload_put(request: Request) -> Response:
    expires = request.path_params["expires"]
    file_id = _check(request, "put", str(expires))
    if expires < time.time():
        raise NotFoundError("this upload URL has expired", code="upload_expired")
    data = await read_body(request)
    name = request.query_params.get("filename") or "file"
    await gateway(request).files.put(data, name, request.headers.get("content-type"), file_id=file_id)
    return Response(status_code=200)


async def _serve_file(request: Request, file_id: str) -> Response:
    files = gateway(request).files
    record = await files.get(file_id)
    return await file_response(request, record, files)


async def upload_get(request: Request) -> Response:
    return await _serve_file(request, _check(request, "get"))


async def signed_file(request: Request) -> Response:
    """An output file by a URL signed for the app that read the result (no API key needed)."""
    return await _serve_file(request, _check(request, "file"))


routes = [
    Route("/scc/comfy_prompt", comfy_prompt, methods=["POST"]),
    Route("/scc/comfy_get_progress", get_progress, methods=["POST"]),
    Route("/scc/comfy_get_result", get_result, methods=["POST"]),
    Route("/scc/sp_create_temp_file_upload_sign", upload_sign, methods=["POST"]),
    Route("/scc/uploads/{key}/{file_id}/{expires:int}/{sig}", upload_put, methods=["PUT"]),
    Route("/scc/uploads/{key}/{file_id}/{sig}", upload_get, methods=["GET"]),
    Route("/scc/files/{file_id}/{key}/{sig}", signed_file, methods=["GET"]),
]

# The API description (server/openapi): one declaration per route.
SPEEDPIX_ERROR = ErrorShape(
    "SpeedPixError",
    {
        "type": "object",
        "required": ["status", "err_code"],
        "properties": {
            "status": {"type": "integer"},
            "err_code": {"type": "string"},
            "err_message": {"type": "string"},
        },
    },
)


def _signed(path: str, summary: str, operation_id: str) -> Operation:
    """A POST signed with the app's secret (a SpeedPix envelope answers, errors included)."""
    return Operation(
        "POST", path, summary, "speedpix", operation_id, body=ANY_OBJECT, body_required=False,
        response=ANY_OBJECT, errors=SPEEDPIX_ERROR, security="speedpix",
    )  # fmt: skip


def _signed_url(method: str, path: str, summary: str, operation_id: str) -> Operation:
    """A URL signed by the gateway (upload slots and file links): no key; bytes in or out."""
    put = method == "PUT"
    return Operation(
        method, path, summary, "speedpix", operation_id, errors=SPEEDPIX_ERROR, security="signed_url",
        body=BINARY if put else None, body_media="application/octet-stream",
        response=None if put else BINARY, response_media="*/*",
    )  # fmt: skip


operations = [
    _signed("/scc/comfy_prompt", "SpeedPix: run a workflow", "speedpixPrompt"),
    _signed("/scc/comfy_get_progress", "SpeedPix: progress", "speedpixProgress"),
    _signed("/scc/comfy_get_result", "SpeedPix: result", "speedpixResult"),
    _signed("/scc/sp_create_temp_file_upload_sign", "SpeedPix: sign an upload", "speedpixUploadSign"),
    _signed_url("PUT", "/scc/uploads/{key}/{file_id}/{expires:int}/{sig}", "SpeedPix: upload", "speedpixUploadPut"),
    _signed_url(
        "GET", "/scc/uploads/{key}/{file_id}/{sig}", "SpeedPix: an upload (served safely)", "speedpixUploadGet"
    ),
    _signed_url("GET", "/scc/files/{file_id}/{key}/{sig}", "SpeedPix: an output file (served safely)", "speedpixFile"),
]
