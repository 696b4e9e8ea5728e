"""``client.workflows`` (save, publish, aliases, status, validate, execute) and ``client.jobs``.

``execute`` is sync by default (the full result: ``success, output, error, logs, metadata,
trace_spans, total_duration``); ``async_execution=True`` returns ``{task_id, status, links}``
(poll with ``client.jobs.get``); ``stream=True`` returns an iterator of events
(``{"event": "block:start"|"block:finish", "blockId"}``, ``{"blockId", "chunk"}``, and last
``{"event": "done", "success", "output", "metadata", ...}``). Sync classes drive the async ones.
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from runyard.client._streaming import AsyncStream, Stream
from runyard.client.files import prepare_inputs, wrap_outputs

if TYPE_CHECKING:
    from runyard.client._base import AsyncAPIClient
    from runyard.client._sync import Portal

__all__ = ["AsyncJobs", "AsyncWorkflows", "Jobs", "Workflows"]

Definition = Mapping[str, Any] | str


def _path(ref: str) -> str:
    return quote(ref, safe="/@")


_REF = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?(@[A-Za-z0-9._-]+)?$")  # not YAML / JSON text


def _definition_body(definition: Any) -> dict[str, Any]:
    if hasattr(definition, "to_dict"):
        definition = definition.to_dict()
    if isinstance(definition, str):
        return {"yaml": definition}
    return dict(definition)


def _with_files(data: Any, client: AsyncAPIClient) -> Any:
    """``data`` with the stored files in its ``output`` as FileOutput (see :func:`wrap_outputs`)."""
    if isinstance(data, dict) and data.get("output") is not None:
        return {**data, "output": wrap_outputs(data["output"], client)}
    return data


class AsyncWorkflows:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def save(self, definition: Definition | Any) -> dict[str, Any]:
        """Save (create or replace) a workflow's draft from a mapping, YAML/JSON text or a
        :class:`runyard.workflows.Workflow`; 422 ``invalid_workflow`` lists each problem."""
        data: dict[str, Any] = await self._client.request("POST", "/v1/workflows", json=_definition_body(definition))
        return data

    push = save

    async def validate(self, definition: Definition | Any) -> dict[str, Any]:
        """Validate a definition without saving it (``{"valid": true, ...}`` or a 422), or, given
        a stored workflow's ref (``ns/name[@alias|@vN]``), whether it can run as it stands:
        ``{"valid", "is_deployed", "version", "problems"}``."""
        if isinstance(definition, str) and _REF.match(definition):
            path = f"/v1/workflows/{_path(definition)}/validate"
            stored: dict[str, Any] = await self._client.request("POST", path)
            return stored
        body = _definition_body(definition)
        data: dict[str, Any] = await self._client.request("POST", "/v1/workflows/validate", json=body)
        return data

    async def publish(self, workflow: str, *, alias: str | None = "main") -> dict[str, Any]:
        """Freeze the draft as the next version ``v1, v2, ...``; ``alias`` moves to it (None: none)."""
        path = f"/v1/workflows/{_path(workflow)}/publish"
        data: dict[str, Any] = await self._client.request("POST", path, json={"alias": alias})
        return data

    async def set_alias(self, workflow: str, alias: str, version: int) -> dict[str, Any]:
        path = f"/v1/workflows/{_path(workflow)}/aliases/{quote(alias, safe='')}"
        data: dict[str, Any] = await self._client.request("POST", path, json={"version": version})
        return data

    async def status(self, workflow: str) -> dict[str, Any]:
        """``is_deployed``, ``deployed_at``, ``needs_redeployment``, versions and aliases."""
        data: dict[str, Any] = await self._client.request("GET", f"/v1/workflows/{_path(workflow)}/status")
        return data

    async def get(self, workflow: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._client.request("GET", f"/v1/workflows/{_path(workflow)}")
        return data

    async def list(self) -> builtins.list[dict[str, Any]]:
        data = await self._client.request("GET", "/v1/workflows")
        return builtins.list(data["data"])

    async def execute(
        self,
        ref: str,
        input: Mapping[str, Any] | None = None,
        *,
        stream: bool = False,
        selected_outputs: builtins.list[str] | None = None,
        async_execution: bool = False,
        version: int | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run ``ns/name[@alias|@vN]`` (default ``@main``): the result, a queued job, or a stream.

        Local files in ``input`` (``Path``, binary file objects, ``runyard.File`` with a path or
        data, bytes) are uploaded first, as for ``client.run``; stored files in the output come
        back as :class:`~runyard.client.files.FileOutput`.
        """
        prepared = await prepare_inputs(dict(input or {}), self._client, auto_upload=False)
        body: dict[str, Any] = {"input": prepared, "stream": stream, "async": async_execution}
        if selected_outputs is not None:
            body["selected_outputs"] = builtins.list(selected_outputs)
        if version is not None:
            body["version"] = version
        if timeout is not None:
            body["timeout"] = timeout
        path = f"/v1/workflows/{_path(ref)}/execute"
        if stream:
            return await self._client.stream("POST", path, json=body, parse=self._with_files)
        return self._with_files(await self._client.request("POST", path, json=body))

    def _with_files(self, data: Any) -> Any:
        return _with_files(data, self._client)


class AsyncJobs:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def get(self, task_id: str) -> dict[str, Any]:
        """``status`` (queued | processing | completed | failed | cancelled), ``output``, ``error``,
        ``metadata``, ``estimatedDuration``."""
        data: dict[str, Any] = await self._client.request("GET", f"/v1/jobs/{quote(task_id, safe='')}")
        return _with_files(data, self._client)

    async def wait(self, task_id: str, *, polling_interval: float = 0.25, timeout: float = 300.0) -> dict[str, Any]:
        import asyncio

        from runyard.errors import TimeoutError

        deadline = time.monotonic() + timeout
        while True:
            job = await self.get(task_id)
            if job["status"] in ("completed", "failed", "cancelled"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {task_id} still {job['status']} after {timeout}s", code="job_timeout")
            await asyncio.sleep(polling_interval)


class Workflows:
    """Blocking twin of :class:`AsyncWorkflows`."""

    def __init__(self, inner: AsyncWorkflows, portal: Portal) -> None:
        self._async = inner
        self._portal = portal

    def save(self, definition: Definition | Any) -> dict[str, Any]:
        return self._portal.call(self._async.save(definition))

    push = save

    def validate(self, definition: Definition | Any) -> dict[str, Any]:
        return self._portal.call(self._async.validate(definition))

    def publish(self, workflow: str, *, alias: str | None = "main") -> dict[str, Any]:
        return self._portal.call(self._async.publish(workflow, alias=alias))

    def set_alias(self, workflow: str, alias: str, version: int) -> dict[str, Any]:
        return self._portal.call(self._async.set_alias(workflow, alias, version))

    def status(self, workflow: str) -> dict[str, Any]:
        return self._portal.call(self._async.status(workflow))

    def get(self, workflow: str) -> dict[str, Any]:
        return self._portal.call(self._async.get(workflow))

    def list(self) -> builtins.list[dict[str, Any]]:
        return self._portal.call(self._async.list())

    def execute(
        self,
        ref: str,
        input: Mapping[str, Any] | None = None,
        *,
        stream: bool = False,
        selected_outputs: builtins.list[str] | None = None,
        async_execution: bool = False,
        version: int | None = None,
        timeout: float | None = None,
    ) -> Any:
        result = self._portal.call(
            self._async.execute(
                ref,
                input,
                stream=stream,
                selected_outputs=selected_outputs,
                async_execution=async_execution,
                version=version,
                timeout=timeout,
            )
        )
        if isinstance(result, AsyncStream):
            return Stream(result, self._portal)
        return result


class Jobs:
    """Blocking twin of :class:`AsyncJobs`."""

    def __init__(self, inner: AsyncJobs, portal: Portal) -> None:
        self._async = inner
        self._portal = portal

    def get(self, task_id: str) -> dict[str, Any]:
        return self._portal.call(self._async.get(task_id))

    def wait(self, task_id: str, *, polling_interval: float = 0.25, timeout: float = 300.0) -> dict[str, Any]:
        return self._portal.call(self._async.wait(task_id, polling_interval=polling_interval, timeout=timeout))
