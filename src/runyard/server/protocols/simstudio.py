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


def run_data(wid: str, task: dict[str, Any], result: dict[str, Any] | None, *, include_output: bool) -> dict[str, Any]:
    """A run as Sim reports it (``result``: the stored result of a finished task)."""
    error = (result or {}).get("error") or task.get("error")
    data: dict[str, Any] = {
        "runId": task["id"],
        "workflowId": wid,
        "status": STATUS.get(task["status"], task["status"]),
        "error": {"code": error.get("code"), "message": error.get("message")} if error else None,
        "durationMs": task.get("duration_ms"),
        "startedAt": task.get("started_at"),
        "endedAt": task.get("finished_at"),
    }
    if include_output:
        data["output"] = (result or {}).get("output")
        data["traceSpans"] = (result or {}).get("trace_spans")
    return data
