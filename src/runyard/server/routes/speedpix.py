"""The ``speedpix`` wire protocol (see shared/protocols/speedpix.md) over the workflow service.

Signed POSTs under ``/scc/``: each request's Aliyun API-Gateway HMAC-SHA256 signature is verified
against the app secret configured for its ``x-ca-key`` (``[apps.integrations.speedpix] apps =
{"<app_key>" = "<app_secret>"}``); a bad or missing signature is 401. Errors of a verified call
are answered 200 with ``err_code`` (the client raises on any non-2xx). Uploads: the sign call
hands out a one-time ``upload_url`` (PUT, unsigned) whose ``access_url`` serves the stored file.
Output ``runyard://files/<id>`` refs become absolute ``/v1/files/<id>/content`` URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...backends.queue import TERMINAL
from ...errors import AuthenticationError, NotFoundError, RunyardError
from ...files import parse_file_ref
from ..http import gateway, json_response, parse_object, read_body
from .workflows import _result

SIGNED = ("x-ca-key", "x-ca-nonce", "x-ca-signature-method", "x-ca-timestamp")
_STATUS = {"queued": "waiting", "processing": "running", "completed": "succeeded", "cancelled": "failed"}


def _apps(request: Request) -> dict[str, str]:
    integration = gateway(request).config.apps.integrations.get("speedpix") or {}
    apps = integration.get("apps") or {}
    return {str(k): str(v) for k, v in apps.items()}


def _uploads(request: Request) -> dict[str, str | None]:
    """upload token -> stored file id (None until the PUT arrives); per gateway, in memory."""
    state = request.app.state
    if not hasattr(state, "speedpix_uploads"):
        state.speedpix_uploads = {}
    uploads: dict[str, str | None] = state.speedpix_uploads
    return uploads


def verify(request: Request, apps: dict[str, str]) -> str:
    """The caller's app key once its signature checks out; 401 otherwise."""
    h = request.headers
    key = h.get("x-ca-key")
    secret = apps.get(key or "")
    given = h.get("x-ca-signature")
    if not key or secret is None or not given:
        raise AuthenticationError("missing or unknown x-ca-key / x-ca-signature", code="invalid_signature")
    lines = [
        "POST",
        h.get("accept", ""),
        h.get("content-md5", ""),
        h.get("content-type", ""),
        h.get("date", ""),
        *(f"{name}:{h.get(name, '')}" for name in SIGNED),
        request.url.path,
    ]
    digest = hmac.new(secret.encode(), "\n".join(lines).encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), given):
        raise AuthenticationError("request signature does not match", code="invalid_signature")
    return key


async def _signed_body(request: Request) -> dict[str, Any]:
    request.state.speedpix_key = verify(request, _apps(request))
    raw = await read_body(request)
    return parse_object(raw) if raw.strip() else {}


def _fail(err: RunyardError) -> Response:
    return json_response({"status": err.status or 500, "err_code": err.code, "err_message": err.message, "data": None})


def _absolute(request: Request, value: Any, key: str) -> Any:
    """``runyard://files/<id>`` refs → absolute URLs signed for ``key`` (the client wraps URLs as FileOutput)."""
    if isinstance(value, str):
        file_id = parse_file_ref(value)
        if file_id is not None:
            sig = _file_sig(_apps(request)[key], file_id)
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
        task = await gateway(request).workflows.submit(ref, inputs, version=version or None)
    except RunyardError as err:
        return _fail(err)
    data = {"task_id": task["id"], "status": "waiting"}
    estimate = gateway(request).workflows.estimated_duration(workflow)
    if estimate is not None:
        data["estimated_duration_in_seconds"] = round(estimate / 1000, 3)
    return json_response({"status": 0, "err_code": "", "data": data})


async def _task(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    return await gateway(request).tasks.get(str(body.get("taskId") or body.get("task_id") or ""))


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
    token = secrets.token_urlsafe(24)
    _uploads(request)[token] = None
    base = str(request.base_url).rstrip("/")
    name = str(body.get("originalFilename") or "file")
    data = {
        "upload_url": f"{base}/scc/uploads/{token}?filename={name}",
        "access_url": f"{base}/scc/uploads/{token}",
        "object_key": token,
        "path": f"uploads/{token}/{name}",
        "expire_time": 3600,
    }
    return json_response({"status": 0, "err_code": "", "data": data})


async def upload_put(request: Request) -> Response:
    uploads = _uploads(request)
    token = request.path_params["token"]
    if token not in uploads or uploads[token] is not None:
        raise NotFoundError("unknown or used upload URL", code="upload_not_found")
    files = gateway(request).files
    data = await read_body(request)
    name = request.query_params.get("filename") or "file"
    record = await files.put(data, name, request.headers.get("content-type"))
    uploads[token] = record.id
    return Response(status_code=200)


async def _serve_file(request: Request, file_id: str) -> Response:
    files = gateway(request).files
    record = await files.get(file_id)
    return Response(await files.read(record), media_type=record.content_type)


async def upload_get(request: Request) -> Response:
    file_id = _uploads(request).get(request.path_params["token"])
    if file_id is None:
        raise NotFoundError("no file uploaded here", code="file_not_found")
    return await _serve_file(request, file_id)


def _file_sig(secret: str, file_id: str) -> str:
    return hmac.new(secret.encode(), file_id.encode(), hashlib.sha256).hexdigest()[:32]


async def signed_file(request: Request) -> Response:
    """An output file by a URL signed for the app that read the result (no API key needed)."""
    p = request.path_params
    secret = _apps(request).get(p["key"])
    if secret is None or not hmac.compare_digest(_file_sig(secret, p["file_id"]), p["sig"]):
        raise NotFoundError("file not found", code="file_not_found")
    return await _serve_file(request, p["file_id"])


routes = [
    Route("/scc/comfy_prompt", comfy_prompt, methods=["POST"]),
    Route("/scc/comfy_get_progress", get_progress, methods=["POST"]),
    Route("/scc/comfy_get_result", get_result, methods=["POST"]),
    Route("/scc/sp_create_temp_file_upload_sign", upload_sign, methods=["POST"]),
    Route("/scc/uploads/{token}", upload_put, methods=["PUT"]),
    Route("/scc/uploads/{token}", upload_get, methods=["GET"]),
    Route("/scc/files/{file_id}/{key}/{sig}", signed_file, methods=["GET"]),
]
