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
refs become URLs signed for the app that read the result.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
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
from ...files import file_uri, parse_file_ref, sanitize_filename
from ..downloads import file_response
from ..http import gateway, json_response, parse_object, read_body
from ..openapi import ANY_OBJECT, BINARY, ErrorShape, Operation
from .workflows import _result

if TYPE_CHECKING:
    from ...gateway import Gateway
    from ...services.limits import Policy

SIGNED = ("x-ca-key", "x-ca-nonce", "x-ca-signature-method", "x-ca-timestamp")
SIGNED_PATHS = frozenset(
    {"/scc/comfy_prompt", "/scc/comfy_get_progress", "/scc/comfy_get_result", "/scc/sp_create_temp_file_upload_sign"}
)
UPLOAD_TTL_S = 3600
SIGNATURE_WINDOW_S = 900  # a signed call's timestamp may be this far from now (API Gateway's 15 min)
_STATUS = {"queued": "waiting", "processing": "running", "completed": "succeeded", "cancelled": "failed"}


@dataclass(frozen=True, slots=True)
class SpeedPixApp:
    key: str
    secret: str
    api_key_id: str | None  # the Runyard API key whose limits and usage this app shares


def apps_of(gw: Gateway) -> dict[str, SpeedPixApp]:
    """The configured apps: ``key = "secret"`` or ``key = {secret, api_key}``."""
    integration = gw.config.apps.integrations.get("speedpix") or {}
    out: dict[str, SpeedPixApp] = {}
    for key, value in (integration.get("apps") or {}).items():
        if isinstance(value, dict):
            linked = value.get("api_key")
            out[str(key)] = SpeedPixApp(str(key), str(value.get("secret") or ""), str(linked) if linked else None)
        else:
            out[str(key)] = SpeedPixApp(str(key), str(value), None)
    return {k: app for k, app in out.items() if app.secret}


def verify(headers: Mapping[str, str], path: str, apps: dict[str, SpeedPixApp]) -> SpeedPixApp:
    """The calling app once its request signature checks out; 401 otherwise."""
    h = headers
    key = h.get("x-ca-key")
    app = apps.get(key or "")
    given = h.get("x-ca-signature")
    if not key or app is None or not given:
        raise AuthenticationError("missing or unknown x-ca-key / x-ca-signature", code="invalid_signature")
    lines = [
        "POST",
        h.get("accept", ""),
        h.get("content-md5", ""),
        h.get("content-type", ""),
        h.get("date", ""),
        *(f"{name}:{h.get(name, '')}" for name in SIGNED),
        path,
    ]
    digest = hmac.new(app.secret.encode(), "\n".join(lines).encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), given):
        raise AuthenticationError("request signature does not match", code="invalid_signature")
    _fresh(h.get("x-ca-timestamp", ""), key + ":" + h.get("x-ca-nonce", ""))
    return app


_seen_nonces: dict[str, float] = {}  # app key:nonce -> when it stops mattering (per process)


def _fresh(timestamp: str, nonce: str) -> None:
    """Replay guard: the signed timestamp within ``SIGNATURE_WINDOW_S`` of now and each nonce used
    once in that window (401 ``signature_expired`` / ``nonce_reused``)."""
    now = time.time()
    try:
        age = abs(now - int(timestamp) / 1000)
    except ValueError:
        age = float("inf")
    if age > SIGNATURE_WINDOW_S:
        raise AuthenticationError("request timestamp is missing or too far from now", code="signature_expired")
    if nonce.endswith(":") or _seen_nonces.get(nonce, 0.0) > now:
        raise AuthenticationError("request nonce is missing or was used already", code="nonce_reused")
    if len(_seen_nonces) > 100_000:
        for old in [n for n, until in _seen_nonces.items() if until <= now]:
            del _seen_nonces[old]
    _seen_nonces[nonce] = now + 2 * SIGNATURE_WINDOW_S


async def authenticate(gw: Gateway, scope: Scope) -> tuple[str, str, Policy] | None:
    """For the auth middleware: (app key, key id for usage, limit policy) of a signed call;
    None for the unsigned upload and file URLs (their own signatures guard them)."""
    if scope["path"] not in SIGNED_PATHS:
        return None
    app = verify(Headers(scope=scope), scope["path"], apps_of(gw))
    if app.api_key_id is None:
        subject = "speedpix:" + app.key
        return app.key, subject, gw.limits.policy(subject)
    key = gw.auth.by_id(app.api_key_id)
    if key is None:
        raise AuthenticationError(f"the API key of app {app.key!r} is revoked or unknown", code="invalid_api_key")
    return app.key, key.id, key.policy


async def _signed_body(request: Request) -> dict[str, Any]:
    state = request.scope.get("state") or {}
    if "signed_caller" in state:  # verified by the auth middleware (authenticate below)
        request.state.speedpix_key = state["signed_caller"]
    else:
        request.state.speedpix_key = verify(request.headers, request.url.path, apps_of(gateway(request))).key
    raw = await read_body(request)
    return parse_object(raw) if raw.strip() else {}


def _fail(err: RunyardError) -> Response:
    return json_response({"status": err.status or 500, "err_code": err.code, "err_message": err.message, "data": None})


def _absolute(request: Request, value: Any, key: str) -> Any:
    """``runyard://files/<id>`` refs → absolute URLs signed for ``key`` (the client wraps URLs as FileOutput)."""
    if isinstance(value, str):
        file_id = parse_file_ref(value)
        if file_id is not None:
            sig = _sign(apps_of(gateway(request))[key].secret, "file", file_id)
            return f"{str(request.base_url).rstrip('/')}/scc/files/{file_id}/{key}/{sig}"
        return value
    if isinstance(value, dict):
        return {k: _absolute(request, v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_absolute(request, v, key) for v in value]
    return value


async def comfy_prompt(request: Request) -> Response:
    body = await _signed_body(request)
    try:
        workflow = str(body.get("workflow_id") or "")
        version = body.get("version_id")
        alias = body.get("alias_id") or "main"
        ref = workflow if version else f"{workflow}@{alias}"
        inputs = body.get("inputs") or {}
        if not isinstance(inputs, dict):
            inputs = {"input": inputs}
        inputs = _own_files(request, inputs)
        state = request.scope.get("state") or {}
        task = await gateway(request).workflows.submit(
            ref, inputs, version=version or None, api_key_id=state.get("api_key_id")
        )
    except RunyardError as err:
        return _fail(err)
    data = {"task_id": task["id"], "status": "waiting"}
    estimate = await gateway(request).workflows.estimated_duration(workflow)
    if estimate is not None:
        data["estimated_duration_in_seconds"] = round(estimate / 1000, 3)
    return json_response({"status": 0, "err_code": "", "data": data})


async def _task(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """The task, if the calling app submitted it (under its linked key or its own identity);
    anyone else's is ``task_not_found``, as an unknown id is."""
    task_id = str(body.get("taskId") or body.get("task_id") or "")
    tasks = gateway(request).tasks
    row = await tasks.queue.get(task_id)
    caller = (request.scope.get("state") or {}).get("api_key_id")
    if row is None or (caller is not None and row.get("api_key_id") != caller):
        raise NotFoundError(f"task {task_id} not found", code="task_not_found")
    return tasks.render(row, [])  # the protocol carries no logs


async def get_progress(request: Request) -> Response:
    body = await _signed_body(request)
    try:
        task = await _task(request, body)
    except RunyardError as err:
        return _fail(err)
    status = task["status"]
    result = await _result(request, task) if status in TERMINAL else None
    mapped = "failed" if result is not None and not result.get("success") else _STATUS.get(status, "failed")
    progress = 1.0 if status in TERMINAL else float(task.get("progress") or 0.0)
    data = {"task_id": task["id"], "status": mapped, "progress": progress, "eta_relative": 0, "message": None}
    return json_response({"status": 0, "err_code": "", "data": data})


async def get_result(request: Request) -> Response:
    body = await _signed_body(request)
    try:
        task = await _task(request, body)
    except RunyardError as err:
        return _fail(err)
    result = await _result(request, task)
    if result is None:
        return json_response({"status": 1, "err_code": "NotFinished", "data": {"task_id": task["id"]}})
    if not result.get("success"):
        error = result.get("error") or {}
        return json_response(
            {
                "status": 500,
                "err_code": "TaskFailed",
                "err_message": error.get("message") or "Task failed",
                "sub_err_code": error.get("code"),
                "sub_err_message": error.get("message"),
                "data": {"task_id": task["id"], "result": None},
            }
        )
    output = result.get("output")
    data = {
        "task_id": task["id"],
        "result": _absolute(
            request, output if isinstance(output, dict) else {"output": output}, request.state.speedpix_key
        ),
    }
    return json_response({"status": 10, "err_code": "", "api_invoke_id": task["id"], "data": data})


async def upload_sign(request: Request) -> Response:
    body = await _signed_body(request)
    key = request.state.speedpix_key
    secret = apps_of(gateway(request))[key].secret
    file_id = str(new_id())
    expires = int(time.time()) + UPLOAD_TTL_S
    name = sanitize_filename(body.get("originalFilename"), default="file")
    base = f"{str(request.base_url).rstrip('/')}/scc/uploads/{key}/{file_id}"
    data = {
        "upload_url": f"{base}/{expires}/{_sign(secret, 'put', file_id, str(expires))}?{urlencode({'filename': name})}",
        "access_url": f"{base}/{_sign(secret, 'get', file_id)}",
        "object_key": file_id,
        "path": f"uploads/{file_id}/{name}",
        "expire_time": UPLOAD_TTL_S,
    }
    return json_response({"status": 0, "err_code": "", "data": data})


def _sign(secret: str, *parts: str) -> str:
    return hmac.new(secret.encode(), ":".join(parts).encode(), hashlib.sha256).hexdigest()[:32]


def _check(request: Request, purpose: str, *parts: str) -> str:
    """The file id of a signed upload/file URL (404 when the signature does not match)."""
    p = request.path_params
    app = apps_of(gateway(request)).get(p["key"])
    if app is None or not hmac.compare_digest(_sign(app.secret, purpose, p["file_id"], *parts), p["sig"]):
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


_OWN_URL = re.compile(
    r"/scc/(?:uploads/(?P<k1>[^/]+)/(?P<f1>[0-9a-f-]{36})/(?P<s1>[0-9a-f]{32})"
    r"|files/(?P<f2>[0-9a-f-]{36})/(?P<k2>[^/]+)/(?P<s2>[0-9a-f]{32}))$"
)


def _own_files(request: Request, value: Any) -> Any:
    """This server's signed access / output URLs inside ``value`` → ``runyard://files/<id>`` refs."""
    if isinstance(value, str):
        base = str(request.base_url).rstrip("/")
        m = _OWN_URL.match(value[len(base) :]) if value.startswith(base + "/scc/") else None
        if m is None:
            return value
        key, file_id, sig = (m["k1"], m["f1"], m["s1"]) if m["f1"] else (m["k2"], m["f2"], m["s2"])
        app = apps_of(gateway(request)).get(key)
        purpose = "get" if m["f1"] else "file"
        if app is None or not hmac.compare_digest(_sign(app.secret, purpose, file_id), sig):
            return value
        return file_uri(file_id)
    if isinstance(value, dict):
        return {k: _own_files(request, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_own_files(request, v) for v in value]
    return value


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
