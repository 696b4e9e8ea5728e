"""Workflows as the routes see them: the store's operations, and runs submitted as tasks.

The pieces live in :mod:`runyard.workflows` (store, refs, engine, the ``runyard/workflow`` app).
"""

from __future__ import annotations

from typing import Any

from ..workflows.app import EVENT, WORKFLOW_APP
from ..workflows.refs import WorkflowRefs
from ..workflows.store import WorkflowStore, definition_error
from .preflight import Preflight
from .tasks import TaskRunner

__all__ = ["EVENT", "WORKFLOW_APP", "WorkflowService"]


class WorkflowService:
    """A thin facade: definitions go to the store, runs become ``runyard/workflow`` tasks."""

    def __init__(self, store: WorkflowStore, refs: WorkflowRefs, tasks: TaskRunner, preflight: Preflight) -> None:
        self.store = store
        self.refs = refs
        self.tasks = tasks
        self.preflight = preflight
        self.check = store.check
        self.save = store.save
        self.set_alias = store.set_alias
        self.status = store.status
        self.list_all = store.list_all
        self.resolve = store.resolve
        self.exists = store.exists
        self.estimated_duration = store.estimated_duration

    async def publish(self, name: str, *, alias: str | None = "main", viewer: str | None = None) -> dict[str, Any]:
        """The next version of ``name``'s draft, once what it names resolves on this gateway."""
        draft = (await self.store.get(name, viewer=viewer, write=True)).draft  # 404 workflow_not_found
        draft = {k: v for k, v in draft.items() if not k.startswith("_")}
        if problems := await self.preflight.workflow_problems(draft, viewer=viewer):
            raise definition_error(problems)  # refused before it can run
        return await self.store.publish(name, alias=alias, viewer=viewer)

    async def validate_ref(self, ref: str, *, viewer: str | None = None) -> dict[str, Any]:
        """The store's check of ``ref``, plus what its definition names that this gateway lacks."""
        report = await self.store.validate_ref(ref, viewer=viewer)
        if report["version"] is not None:
            found = await self.store.resolve(ref)
            stored = {k: v for k, v in found.definition.items() if not k.startswith("_")}
            problems = await self.preflight.workflow_problems(stored, viewer=viewer)
            report["problems"] = [*report["problems"], *problems]
            report["valid"] = not report["problems"]
        return report

    async def submit(
        self,
        ref: str,
        input: dict[str, Any],
        *,
        version: int | str | None = None,
        stream: bool = False,
        selected_outputs: list[str] | None = None,
        webhook: str | None = None,
        api_key_id: str | None = None,
        pool: str | None = None,
    ) -> dict[str, Any]:
        """Queue a run as a task of the ``runyard/workflow`` app (``pool``: default the app's); the task."""
        payload = await self.refs.payload(
            ref, input, version=version, stream=stream, selected_outputs=selected_outputs, api_key_id=api_key_id
        )
        return await self.tasks.create(WORKFLOW_APP, payload, webhook=webhook, api_key_id=api_key_id, pool=pool)
