"""The built-in ``runyard/workflow`` app: each workflow run is one of its tasks (queued, polled, streamed)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..apps import AppContext, AppDefinition, app, definition_of
from ..errors import RunyardError
from ..telemetry import spans
from .blocks import BlockServices
from .engine import Run
from .store import WORKFLOW_APP, WorkflowStore

__all__ = ["EVENT", "WORKFLOW_APP", "WorkflowRunInput", "workflow_app"]

EVENT = "workflow"  # the task event type a run's progress and result are written as


class WorkflowRunInput(BaseModel):
    workflow: str
    version: int
    input: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False
    selected_outputs: list[str] | None = None


def workflow_app(store: WorkflowStore, services: BlockServices) -> AppDefinition:
    """The built-in ``runyard/workflow`` app: every workflow run is one of its tasks."""

    @app(WORKFLOW_APP, version="1.0.0", description="Run a published workflow version.")
    async def run_workflow(input: WorkflowRunInput, ctx: AppContext) -> Any:
        definition = (await store.resolve(input.workflow, input.version)).definition

        def emit(data: dict[str, Any]) -> None:
            ctx._emit(EVENT, data)

        run = Run(services, definition, input.input, ctx, emit, stream=input.stream, selected=input.selected_outputs)
        with spans.workflow_run(input.workflow, input.version) as span:
            result = await run.execute()
            spans.workflow_outcome(span, result)
        emit({"event": "result", "result": result})
        if not result["success"]:
            err = result["error"]
            raise RunyardError(err["message"], code=err["code"], status=500)
        return result["output"]  # the task's output; the full result is its last workflow event

    definition = definition_of(run_workflow)
    assert definition is not None  # @app attached it
    return definition
