"""The API description of the inference.sh adapter's routes (routes/inferencesh.py), declared beside it:
that module is at the 500-line limit."""

from __future__ import annotations

from ..openapi import ANY_OBJECT, BINARY, SSE, ErrorShape, Operation
from .inferencesh import PREFIX

INFERENCESH_ERROR = ErrorShape(
    "InferenceShProblem",
    {
        "type": "object",
        "required": ["success", "title", "status"],
        "properties": {
            "success": {"const": False},
            "type": {"type": "string"},
            "title": {"type": "string", "description": "the error code"},
            "detail": {"type": "string"},
            "status": {"type": "integer"},
            "error": {"type": "object"},
        },
    },
    media_type="application/problem+json",
)
_NDJSON = {"response": SSE, "response_media": "application/x-ndjson"}
_TAG = "inference.sh"


def _op(method: str, path: str, summary: str, operation_id: str, **kwargs: object) -> Operation:
    kwargs.setdefault("response", ANY_OBJECT)
    return Operation(method, PREFIX + path, summary, _TAG, operation_id, errors=INFERENCESH_ERROR, **kwargs)  # type: ignore[arg-type]


_TASK_LINKS = {
    "GetTask": {"operationId": "inferenceshGetTask", "parameters": {"task_id": "$response.body#/data/id"}},
    "CancelTask": {"operationId": "inferenceshCancelTask", "parameters": {"task_id": "$response.body#/data/id"}},
}
operations = [
    _op("POST", "/apps/run", "inference.sh: run an app", "inferenceshRunApp", body=ANY_OBJECT, links=_TASK_LINKS),
    _op("GET", "/tasks/{task_id}", "inference.sh: a task", "inferenceshGetTask"),
    _op("GET", "/tasks/{task_id}/stream", "inference.sh: a task's updates", "inferenceshStreamTask", **_NDJSON),
    _op("POST", "/tasks/{task_id}/cancel", "inference.sh: cancel a task", "inferenceshCancelTask"),
    _op("POST", "/files", "inference.sh: create upload slots", "inferenceshCreateFiles", body=ANY_OBJECT),
    _op(
        "PUT",
        "/uploads/{token}",
        "inference.sh: upload a file",
        "inferenceshUpload",
        body=BINARY,
        body_media="application/octet-stream",
    ),
    _op("POST", "/agents/run", "inference.sh: run an agent", "inferenceshAgentsRun", body=ANY_OBJECT),
    _op("GET", "/chats/{chat_id}", "inference.sh: a chat", "inferenceshGetChat"),
    _op("GET", "/chats/{chat_id}/stream", "inference.sh: a chat's updates", "inferenceshChatStream", **_NDJSON),
    _op("POST", "/tools/{inv_id}", "inference.sh: a tool's result", "inferenceshToolResult", body=ANY_OBJECT),
    _op(
        "POST",
        "/tools/{inv_id}/invoke",
        "inference.sh: approve a tool call",
        "inferenceshToolApprove",
        body=ANY_OBJECT,
        body_required=False,
    ),
    _op(
        "POST",
        "/tools/{inv_id}/reject",
        "inference.sh: reject a tool call",
        "inferenceshToolReject",
        body=ANY_OBJECT,
        body_required=False,
    ),
]
