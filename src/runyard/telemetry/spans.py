"""Named spans for tasks, workflows and agents: one line at each call site (README "Operate").

A task's trace crosses processes: ``carrier = task_carrier()`` at submit is stored with the
task (its row or input metadata, e.g. under ``"_trace"``); the worker runs it under
``with task_run(app, task_id, carrier, queued_at):`` which continues that trace, with a
``task.queue_wait`` span from ``queued_at`` to the start. All are free when tracing is off.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone

from ..errors import RunyardError
from . import tracing
from .tracing import Span


def task_carrier() -> dict[str, str]:
    """The current trace context (``{"traceparent": ...}``) to store with a task; {} when off."""
    return tracing.inject({})


def task_submit(app: str) -> Span:
    return tracing.span(f"task.submit {app}", {"runyard.task.app": app}, kind="client")


_OFF = contextlib.nullcontext(tracing.NOOP)  # tracing off: nothing to set up per task


def task_run(
    app: str, task_id: str, carrier: Mapping[str, str] | None, queued_at: datetime | None = None
) -> contextlib.AbstractContextManager[Span]:
    """The task's run, continuing the submitter's trace (``carrier``), after its queue wait."""
    if not tracing.enabled():
        return _OFF
    return _task_run(app, task_id, carrier, queued_at)


@contextlib.contextmanager
def _task_run(app: str, task_id: str, carrier: Mapping[str, str] | None, queued_at: datetime | None) -> Iterator[Span]:
    with tracing.attached(carrier):
        if queued_at is not None and tracing.enabled():
            with tracing.span("task.queue_wait", {"runyard.task.id": task_id}, start_ns=_ns(queued_at)):
                pass
        with tracing.span(f"task.run {app}", {"runyard.task.app": app, "runyard.task.id": task_id}) as s:
            yield s


def task_outcome(span: Span, status: str, error: Mapping[str, object] | None) -> None:
    """A task run's end: ``runyard.task.status``; a failed one has status ERROR and ``error.type``."""
    span.set("runyard.task.status", status)
    if status == "failed" and error:
        code = str(error.get("code") or "task_failed")
        span.fail(RunyardError(str(error.get("message") or code), code=code), code)


def workflow_run(name: str, version: int | None = None) -> Span:
    return tracing.span(f"workflow {name}", {"runyard.workflow.name": name, "runyard.workflow.version": version})


def workflow_outcome(span: Span, result: Mapping[str, object]) -> None:
    """A workflow run's end: a failed run has status ERROR and the failing block's ``error.type``."""
    error = result.get("error")
    span.set("runyard.workflow.success", bool(result.get("success")))
    if isinstance(error, Mapping):
        code = str(error.get("code") or "workflow_failed")
        span.set("runyard.block.id", str(error["block"]) if error.get("block") else None)
        span.fail(RunyardError(str(error.get("message") or code), code=code), code)


def workflow_block(block_id: str, kind: str) -> Span:
    """One block of a workflow run; the model, agent and app calls it makes are its children."""
    return tracing.span(f"workflow.block {block_id}", {"runyard.block.id": block_id, "runyard.block.kind": kind})


def agent_chat(agent: str, chat_id: str | None = None, model: str | None = None) -> Span:
    """An agent's turn (GenAI ``invoke_agent``); its model calls and tool calls are children.
    ``agent``: the template (``name`` or ``name@version``, the agent's id)."""
    name = agent.partition("@")[0]
    return tracing.span(
        f"invoke_agent {name}",
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": name,
            "gen_ai.agent.id": agent if "@" in agent else None,
            "gen_ai.conversation.id": chat_id,
            "gen_ai.request.model": model,
        },
    )


def tool_call(tool: str, call_id: str | None = None, tool_type: str | None = None, started: str | None = None) -> Span:
    """One tool call of an agent (GenAI ``execute_tool``); ``tool_type``: client, app, agent,
    webhook or internal; ``started``: when the model asked for it, ISO 8601 (a client tool's
    result comes in a later request)."""
    return tracing.span(
        f"execute_tool {tool}",
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": tool_type,
        },
        start_ns=_ns(datetime.fromisoformat(started)) if started is not None and tracing.enabled() else None,
    )


def _ns(at: datetime) -> int:
    if at.tzinfo is None:  # the store's datetimes are UTC (SQLite reads them back naive)
        at = at.replace(tzinfo=timezone.utc)
    start = int(at.timestamp() * 1e9)
    return min(start, time.time_ns())
