"""Sim's (``simstudio-sdk``) wire protocol as plain functions: an execute body checked, and a run
(a workflow task and its result) in Sim's shape. The HTTP handlers are server/routes/simstudio.py."""

from __future__ import annotations

from typing import Any

from ...errors import InvalidRequestError

STATUS = {"queued": "pending", "processing": "running"}
STATUS_KEYS = ("isDeployed", "deployedAt", "needsRedeployment", "deployed_version", "aliases")


def selected_outputs(body: dict[str, Any]) -> list[str] | None:
    """``selectedOutputs``: a list of block output names, or None."""
    selected = body.get("selectedOutputs")
    if selected is not None and not (isinstance(selected, list) and all(isinstance(s, str) for s in selected)):
        raise InvalidRequestError("selectedOutputs must be a list of strings", code="validation_error")
    return selected


def workflow_input(body: dict[str, Any]) -> dict[str, Any]:
    """The workflow's input: ``input`` as is when an object, else ``{"input": <value>}``."""
    value = body.get("input", {})
    return value if isinstance(value, dict) else {"input": value}


def wait_s(body: dict[str, Any], most: float) -> float:
    """How long a synchronous execute waits: ``executionTimeoutSeconds``, at most ``most``."""
    timeout = body.get("executionTimeoutSeconds")
    return min(float(timeout), most) if isinstance(timeout, int | float) else most


def _execution_error(error: dict[str, Any]) -> dict[str, Any]:
    """A failed run's error: Sim's ``EXECUTION_ERROR``, Runyard's own code kept as ``type``."""
    return {"code": EXECUTION_ERROR, "message": error.get("message"), "type": error.get("code")}


def run_data(wid: str, task: dict[str, Any], result: dict[str, Any] | None, *, include_output: bool) -> dict[str, Any]:
    """A run as Sim reports it (``result``: the stored result of a finished task)."""
    error = (result or {}).get("error") or task.get("error")
    data: dict[str, Any] = {
        "runId": task["id"],
        "workflowId": wid,
        "status": STATUS.get(task["status"], task["status"]),
        "error": _execution_error(error) if error else None,
        "durationMs": task.get("duration_ms"),
        "startedAt": task.get("started_at"),
        "endedAt": task.get("finished_at"),
    }
    if include_output:
        data["output"] = (result or {}).get("output")
        data["traceSpans"] = (result or {}).get("trace_spans")
    return data


# Sim's error vocabulary (what SimStudioError.code reads). Codes not listed keep Runyard's.
BODY_CODES = frozenset({"invalid_json", "validation_error", "invalid_request"})
EXECUTION_ERROR = "EXECUTION_ERROR"


def sim_error(status: int, code: str) -> tuple[int, str]:
    """Runyard's (HTTP status, error code) as Sim answers it: a bad key 401 ``UNAUTHORIZED``, a bad
    body 400 ``INVALID_JSON``, a spent usage limit 402 ``USAGE_LIMIT_EXCEEDED`` (with 429 the client
    would report a rate limit and ``execute_with_retry`` sleep until the period ends), other limits
    429 ``RATE_LIMIT_EXCEEDED``, server-side failures ``EXECUTION_ERROR``."""
    if status == 401:
        return 401, "UNAUTHORIZED"
    if code == "USAGE_LIMIT_EXCEEDED":
        return 402, code
    if status == 429:
        return 429, "RATE_LIMIT_EXCEEDED"
    if status in (400, 422) and code in BODY_CODES:
        return 400, "INVALID_JSON"
    if status >= 500:
        return status, EXECUTION_ERROR
    return status, code


def error_body(path: str, code: str, message: str) -> dict[str, Any]:
    """The error body: ``{"error": {"code", "message"}}`` on the v2 endpoints (``/api/v2/``), the
    legacy endpoints' ``{"error": "<message>", "code": "<CODE>"}`` elsewhere."""
    if path.startswith("/api/v2/"):
        return {"error": {"code": code, "message": message}}
    return {"error": message, "code": code}
