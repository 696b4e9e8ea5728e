"""SpeedPix's wire protocol as plain functions: the apps and their secrets, the Aliyun API-Gateway
request signature (with its replay guard), the signed upload and file URLs, and the answers'
envelope. The HTTP handlers (and the protocol's description) are server/routes/speedpix.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...config import RunyardConfig
from ...errors import AuthenticationError, InvalidRequestError, RunyardError
from ...files import file_uri, parse_file_ref

SIGNED = ("x-ca-key", "x-ca-nonce", "x-ca-signature-method", "x-ca-timestamp")
SIGNED_PATHS = frozenset(
    {"/scc/comfy_prompt", "/scc/comfy_get_progress", "/scc/comfy_get_result", "/scc/sp_create_temp_file_upload_sign"}
)
UPLOAD_TTL_S = 3600
SIGNATURE_WINDOW_S = 900  # a signed call's timestamp may be this far from now (API Gateway's 15 min)
STATUS = {"queued": "waiting", "processing": "running", "completed": "succeeded", "cancelled": "failed"}


@dataclass(frozen=True, slots=True)
class SpeedPixApp:
    key: str
    secret: str
    api_key_id: str | None  # the Runyard API key whose limits and usage this app shares


def apps_of(config: RunyardConfig) -> dict[str, SpeedPixApp]:
    """The configured apps: ``key = "secret"`` or ``key = {secret, api_key}``."""
    integration = config.apps.integrations.get("speedpix") or {}
    out: dict[str, SpeedPixApp] = {}
    for key, value in (integration.get("apps") or {}).items():
        if isinstance(value, dict):
            linked = value.get("api_key")
            out[str(key)] = SpeedPixApp(str(key), str(value.get("secret") or ""), str(linked) if linked else None)
        else:
            out[str(key)] = SpeedPixApp(str(key), str(value), None)
    return {k: app for k, app in out.items() if app.secret}


def resources_of(config: RunyardConfig) -> dict[str, str]:
    """Dedicated resources: ``resource_config_id`` -> worker pool (``[apps.integrations.speedpix.resources]``)."""
    integration = config.apps.integrations.get("speedpix") or {}
    return {str(k): str(v) for k, v in (integration.get("resources") or {}).items()}


def pool_for(resource_id: str | None, resources: dict[str, str]) -> str | None:
    """The worker pool of a ``resource_config_id`` (None: shared resources, the default); 400
    ``unknown_resource_config`` for an id that is not configured."""
    if not resource_id or resource_id == "default":
        return None
    if resource_id not in resources:
        known = ", ".join(sorted(resources)) or "none configured"
        raise InvalidRequestError(
            f"unknown resource_config_id {resource_id!r} (known: {known})", code="unknown_resource_config"
        )
    return resources[resource_id]


CALL_OPTIONS = ("alias_id", "version_id", "resource_config_id")  # honoured inside the dict call form
CLIENT_ONLY = ("wait", "polling_interval", "file_encoding_strategy", "return_temp_files")


def declared_inputs(definition: dict[str, Any]) -> set[str]:
    """The input names a workflow definition declares."""
    blocks = definition.get("blocks") or []
    return {str(n) for b in blocks if b.get("kind") == "input" for n in (b.get("inputs") or {})}


def unwrap_call(body: dict[str, Any], declared: set[str]) -> dict[str, Any]:
    """The doc's dict call form, ``run("wf", {"input": {...}, "alias_id": "main", "wait": False})``,
    sends that whole dict as ``inputs``: unwrap ``input`` and take ``alias_id`` / ``version_id`` /
    ``resource_config_id`` from it (client-side options such as ``wait`` are dropped). Left as sent
    when the workflow itself declares an input named ``input``, or ``input`` is not an object."""
    inputs = body.get("inputs")
    if not isinstance(inputs, dict) or "input" in declared or not isinstance(inputs.get("input"), dict):
        return body
    out = {**body, "inputs": inputs["input"]}
    for option in CALL_OPTIONS:
        if inputs.get(option) is not None:
            out[option] = inputs[option]
    if inputs.get("version_id") is not None and inputs.get("alias_id") is None:
        out["alias_id"] = None  # the client filled in "main"; a version named inside wins
    return out


def verify(
    headers: Mapping[str, str], path: str, apps: dict[str, SpeedPixApp], *, local_nonces: bool = True
) -> SpeedPixApp:
    """The calling app once its request signature checks out; 401 otherwise. ``local_nonces``
    False: the caller checks :func:`nonce_of` on the replicas' shared guard instead."""
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
    _fresh(h.get("x-ca-timestamp", ""), nonce_of(h), local=local_nonces)
    return app


def nonce_of(headers: Mapping[str, str]) -> str:
    """The replay-guard key of a signed request: ``<app key>:<nonce>``."""
    return headers.get("x-ca-key", "") + ":" + headers.get("x-ca-nonce", "")


_seen_nonces: dict[str, float] = {}  # app key:nonce -> when it stops mattering (per process)


def _fresh(timestamp: str, nonce: str, *, local: bool = True) -> None:
    """Replay guard: the signed timestamp within ``SIGNATURE_WINDOW_S`` of now and each nonce used
    once in that window (401 ``signature_expired`` / ``nonce_reused``)."""
    now = time.time()
    try:
        age = abs(now - int(timestamp) / 1000)
    except ValueError:
        age = float("inf")
    if age > SIGNATURE_WINDOW_S:
        raise AuthenticationError("request timestamp is missing or too far from now", code="signature_expired")
    if nonce.endswith(":") or (local and _seen_nonces.get(nonce, 0.0) > now):
        raise AuthenticationError("request nonce is missing or was used already", code="nonce_reused")
    if not local:
        return
    if len(_seen_nonces) > 100_000:
        for old in [n for n, until in _seen_nonces.items() if until <= now]:
            del _seen_nonces[old]
    _seen_nonces[nonce] = now + 2 * SIGNATURE_WINDOW_S


def sign(secret: str, *parts: str) -> str:
    return hmac.new(secret.encode(), ":".join(parts).encode(), hashlib.sha256).hexdigest()[:32]


def signed_urls(value: Any, base: str, app: SpeedPixApp) -> Any:
    """``runyard://files/<id>`` refs → absolute URLs signed for ``app`` (the client wraps URLs as FileOutput)."""
    if isinstance(value, str):
        file_id = parse_file_ref(value)
        if file_id is not None:
            return f"{base}/scc/files/{file_id}/{app.key}/{sign(app.secret, 'file', file_id)}"
        return value
    if isinstance(value, dict):
        return {k: signed_urls(v, base, app) for k, v in value.items()}
    if isinstance(value, list):
        return [signed_urls(v, base, app) for v in value]
    return value


_OWN_URL = re.compile(
    r"/scc/(?:uploads/(?P<k1>[^/]+)/(?P<f1>[0-9a-f-]{36})/(?P<s1>[0-9a-f]{32})"
    r"|files/(?P<f2>[0-9a-f-]{36})/(?P<k2>[^/]+)/(?P<s2>[0-9a-f]{32}))$"
)


def own_file_refs(value: Any, base: str, apps: dict[str, SpeedPixApp]) -> Any:
    """This server's signed access / output URLs inside ``value`` → ``runyard://files/<id>`` refs."""
    if isinstance(value, str):
        m = _OWN_URL.match(value[len(base) :]) if value.startswith(base + "/scc/") else None
        if m is None:
            return value
        key, file_id, sig = (m["k1"], m["f1"], m["s1"]) if m["f1"] else (m["k2"], m["f2"], m["s2"])
        app = apps.get(key)
        purpose = "get" if m["f1"] else "file"
        if app is None or not hmac.compare_digest(sign(app.secret, purpose, file_id), sig):
            return value
        return file_uri(file_id)
    if isinstance(value, dict):
        return {k: own_file_refs(v, base, apps) for k, v in value.items()}
    if isinstance(value, list):
        return [own_file_refs(v, base, apps) for v in value]
    return value


def answer(data: Any, status: int = 0, err_code: str = "", **extra: Any) -> dict[str, Any]:
    """The envelope of every answer (``status`` 0 / 10: done; ``err_code`` empty unless it failed)."""
    return {"status": status, "err_code": err_code, **extra, "data": data}


def failure(err: RunyardError) -> dict[str, Any]:
    """A verified call's error, answered 200 (the client raises on any non-2xx)."""
    return {"status": err.status or 500, "err_code": err.code, "err_message": err.message, "data": None}


def progress(task: dict[str, Any], result: dict[str, Any] | None, terminal: bool) -> dict[str, Any]:
    """``comfy_get_progress``'s data for a task (``result``: its stored result once terminal)."""
    status = task["status"]
    mapped = "failed" if result is not None and not result.get("success") else STATUS.get(status, "failed")
    done = 1.0 if terminal else float(task.get("progress") or 0.0)
    return {"task_id": task["id"], "status": mapped, "progress": done, "eta_relative": 0, "message": None}


def task_failed(task_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """``comfy_get_result``'s answer for a failed task."""
    error = result.get("error") or {}
    return {
        "status": 500,
        "err_code": "TaskFailed",
        "err_message": error.get("message") or "Task failed",
        "sub_err_code": error.get("code"),
        "sub_err_message": error.get("message"),
        "data": {"task_id": task_id, "result": None},
    }
