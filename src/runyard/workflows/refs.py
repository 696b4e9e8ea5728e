"""From a workflow ref and its input to the ``runyard/workflow`` task that runs it (file inputs stored first)."""

from __future__ import annotations

from typing import Any

from ..services.files import FileService
from .store import WORKFLOW_APP, WorkflowStore

__all__ = ["WorkflowRefs"]


class WorkflowRefs:
    """Turns a workflow ref and its input into the ``runyard/workflow`` task that runs it."""

    def __init__(self, store: WorkflowStore, files: FileService | None, *, allow_private: bool = False) -> None:
        """``allow_private``: file inputs given as URLs may point at private addresses."""
        self.store = store
        self.files = files
        self.allow_private = allow_private

    async def task_for(
        self, ref: str, input: dict[str, Any], *, api_key_id: str | None
    ) -> tuple[str, dict[str, Any]] | None:
        """``(runyard/workflow, its input)`` when ``ref`` names a stored workflow the key may run, else ``None``."""
        if not await self.store.exists(ref, viewer=await self.store.namespaces.viewer(api_key_id)):
            return None
        return WORKFLOW_APP, await self.payload(ref, input, api_key_id=api_key_id)

    async def payload(
        self,
        ref: str,
        input: dict[str, Any],
        *,
        version: int | str | None = None,
        stream: bool = False,
        selected_outputs: list[str] | None = None,
        api_key_id: str | None = None,
    ) -> dict[str, Any]:
        """The ``runyard/workflow`` task's input for a run of ``ref``.

        Declared ``file`` inputs (and ``array`` of ``file``) are stored first and passed on as
        their ``runyard://files/<id>`` refs (see :meth:`FileService.ingest`). Another workspace's
        workflow is 404 ``workflow_not_found`` for ``api_key_id``, as an unknown one is.
        """
        viewer = await self.store.namespaces.viewer(api_key_id)
        found = await self.store.resolve(ref, version, viewer=viewer)
        return {
            "workflow": found.name,
            "version": found.version,
            "input": await self._store_file_inputs(found.definition, input, api_key_id),
            "stream": stream,
            "selected_outputs": selected_outputs,
        }

    async def _store_file_inputs(
        self, definition: dict[str, Any], input: dict[str, Any], api_key_id: str | None
    ) -> dict[str, Any]:
        """A copy of ``input`` with each declared file input (or its declared ``default``, when the
        caller gave none) replaced by its stored file's ref."""
        files = self.files
        declared = _file_inputs(definition)
        defaults = {n: d for n, (_, d) in declared.items() if d is not None and n not in input}
        if files is None or not (declared.keys() & input.keys() or defaults):
            return input
        allow_private = self.allow_private

        async def store(value: Any) -> str:
            return (await files.ingest(value, api_key_id=api_key_id, allow_private=allow_private)).uri

        out = {**defaults, **input}
        for name, (is_array, _) in declared.items():
            value = out.get(name)
            if value is None:
                continue
            if not is_array:
                out[name] = await store(value)
            elif isinstance(value, list):
                out[name] = [await store(item) for item in value]
        return out


def _spec_type(spec: Any) -> Any:
    return spec.get("type") if isinstance(spec, dict) else spec


def _file_inputs(definition: dict[str, Any]) -> dict[str, tuple[bool, Any]]:
    """Input name → (is an array, declared default or None), for every ``file`` / array-of-``file``
    input declared."""
    out: dict[str, tuple[bool, Any]] = {}
    for block in definition.get("blocks") or []:
        if block.get("kind") != "input":
            continue
        for name, spec in (block.get("inputs") or {}).items():
            tp = _spec_type(spec)
            default = spec.get("default") if isinstance(spec, dict) else None
            if tp == "file":
                out[name] = (False, default)
            elif tp == "array" and isinstance(spec, dict) and _spec_type(spec.get("items")) == "file":
                out[name] = (True, default)
    return out
