"""Typed records at the backend boundary: what the task queue hands out (tasks, their events,
sessions). Frozen: a change goes through the queue, never through a record.

User payloads (``input``, ``setup``, ``output``, event ``data``) stay plain JSON values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

__all__ = ["SessionRecord", "TaskEvent", "TaskRecord"]


def _columns(row: Any) -> dict[str, Any]:
    return {str(k): v for k, v in row._mapping.items()}


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One row of ``tasks``: a run of ``app@version``, its state, lease and outcome."""

    id: str
    app: str
    version: str
    status: str
    pool: str
    created_at: datetime
    max_attempts: int
    input: dict[str, Any] | None = None
    setup: dict[str, Any] | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    progress: float | None = None
    session_id: str | None = None
    webhook: str | None = None
    attempts: int = 0
    worker_id: str | None = None
    affinity: str | None = None
    lease_until: float | None = None
    cancel_requested: bool = False
    api_key_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    trace: dict[str, str] | None = None  # the submitter's trace context (``traceparent``)

    @property
    def ref(self) -> str:
        """``app@version``."""
        return f"{self.app}@{self.version}"

    @classmethod
    def from_row(cls, row: Any) -> TaskRecord:
        return cls(**_columns(row))

    def values(self) -> dict[str, Any]:
        """The record's set columns (for an INSERT: unset ones stay SQL ``NULL``, not JSON ``null``)."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One entry of a task's event log: ``status``, ``log``, ``progress`` or an app's own type."""

    seq: int
    type: str
    data: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> TaskEvent:
        return cls(**_columns(row))


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A class app's session: the worker holding its instance, when it expires (idle), and until
    when that worker is known alive (``lease_until``, renewed while it runs)."""

    id: str
    app: str
    status: str
    timeout_s: int
    created_at: datetime
    worker_id: str | None = None
    expires_at: float | None = None
    lease_until: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> SessionRecord:
        return cls(**_columns(row))
