"""``client.run`` and ``client.tasks``: run apps, wait / poll / stream tasks. Sync classes drive the async ones.

``run(ref, input, wait=True)`` asks the server to hold the request (long-poll, up to 30 s at a
time), then polls every ``polling_interval`` until the task is terminal; a ``failed`` or
``cancelled`` task raises :class:`~runyard.errors.TaskFailedError` (``.task``). ``wait=False``
returns the queued task at once; ``stream=True`` returns an iterator of :class:`TaskUpdate`
(status, log and progress events, the last one carrying the final ``task``).

Inputs: local file paths, ``Path``, bytes and file objects are uploaded first (see
:func:`runyard.client.files.prepare_inputs`; ``auto_upload=False`` keeps path strings as
they are, ``file_encoding_strategy="base64"`` inlines small files). Outputs: stored files
come back as :class:`~runyard.client.files.FileOutput`.

Module level: ``runyard.run(...)`` / ``await runyard.async_run(...)`` use a default client
from the environment: ``RUNYARD_BASE_URL`` (+ ``RUNYARD_API_KEY``) for a server, otherwise
embedded when ``RUNYARD_EMBEDDED=1`` or ``RUNYARD_CONFIG`` is set, else ``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from runyard.client.files import prepare_inputs, wrap_outputs
from runyard.errors import TaskFailedError, TimeoutError

if TYPE_CHECKING:
    from runyard.client._base import AsyncAPIClient
    from runyard.client._client import AsyncClient, Client
    from runyard.client._sync import Portal

__all__ = ["AsyncTask", "AsyncTasks", "Task", "TaskPage", "TaskUpdate", "Tasks", "async_run", "run"]

TERMINAL = frozenset({"completed", "failed", "cancelled"})
SERVER_WAIT_S = 30.0
FileEncoding = Literal["url", "base64"]


class TaskUpdate(BaseModel):
    """One streamed event: ``type`` is ``status``, ``log`` or ``progress``."""

    model_config = ConfigDict(extra="allow")

    type: str
    seq: int = 0
    task_id: str = ""
    status: str | None = None
    message: str | None = None
    progress: float | None = None
    error: dict[str, Any] | None = None
    task: dict[str, Any] | None = None
    created_at: str | None = None


class _TaskData:
    """The fields of a task, read from its JSON."""

    _data: dict[str, Any]
    _output: Any

    def _set(self, data: dict[str, Any], client: AsyncAPIClient) -> None:
        self._data = data
        self._output = wrap_outputs(data.get("output"), client) if data.get("output") is not None else None

    id = property(lambda self: str(self._data["id"]))
    status = property(lambda self: str(self._data["status"]))
    app = property(lambda self: self._data.get("app"))
    input = property(lambda self: self._data.get("input"))
    output = property(lambda self: self._output, doc="the output; stored files are FileOutput")
    error = property(lambda self: self._data.get("error"))
    logs = property(lambda self: list(self._data.get("logs") or []))
    progress = property(lambda self: self._data.get("progress"))
    session_id = property(lambda self: self._data.get("session_id"))
    attempts = property(lambda self: self._data.get("attempts", 0))
    pool = property(lambda self: self._data.get("pool"))
    created_at = property(lambda self: self._data.get("created_at"))
    started_at = property(lambda self: self._data.get("started_at"))
    finished_at = property(lambda self: self._data.get("finished_at"))
    duration_ms = property(lambda self: self._data.get("duration_ms"))

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __getitem__(self, key: str) -> Any:  # inference.sh style: task["output"]
        return self.output if key == "output" else self._data[key]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, app={self.app!r}, status={self.status!r})"


class AsyncTask(_TaskData):
    def __init__(self, tasks: AsyncTasks, data: dict[str, Any]) -> None:
        self._tasks = tasks
        self._set(data, tasks._client)

    async def reload(self) -> AsyncTask:
        """Fetch the current state (``GET /v1/tasks/{id}``)."""
        self._set(await self._tasks._get_raw(self.id), self._tasks._client)
        return self

    async def wait(self, *, polling_interval: float = 1.0, timeout: float | None = None) -> AsyncTask:
        """Poll until terminal; raises TaskFailedError (failed/cancelled) or TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"task {self.id} still {self.status} after {timeout:g}s", code="task_timeout", status=None
                )
            pause = polling_interval if deadline is None else min(polling_interval, deadline - time.monotonic())
            await asyncio.sleep(max(0.0, pause))
            await self.reload()
        return self.raise_for_status()

    async def cancel(self) -> AsyncTask:
        """Cancel (``POST /v1/tasks/{id}/cancel``): queued → cancelled now; processing → asked to stop."""
        self._set(await self._tasks._client.request("POST", f"{_path(self.id)}/cancel"), self._tasks._client)
        return self

    def raise_for_status(self) -> AsyncTask:
        if self.status in ("failed", "cancelled"):
            raise _failed(self)
        return self


class Task(_TaskData):
    """Blocking twin of :class:`AsyncTask`."""

    def __init__(self, inner: AsyncTask, portal: Portal) -> None:
        self._async = inner
        self._portal = portal

    _data = property(lambda self: self._async._data)
    _output = property(lambda self: self._async._output)

    def reload(self) -> Task:
        self._portal.call(self._async.reload())
        return self

    def wait(self, *, polling_interval: float = 1.0, timeout: float | None = None) -> Task:
        try:
            self._portal.call(self._async.wait(polling_interval=polling_interval, timeout=timeout))
        except TaskFailedError as err:
            err.task = self
            raise
        return self

    def cancel(self) -> Task:
        self._portal.call(self._async.cancel())
        return self


class TaskPage(BaseModel):
    data: list[dict[str, Any]]
    next_cursor: str | None = None
    has_more: bool = False


class AsyncTasks:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def run(
        self,
        app: str,
        input: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        stream: bool = False,
        setup: dict[str, Any] | None = None,
        session: str | None = None,
        session_timeout: int | None = None,
        webhook: str | None = None,
        pool: str | None = None,
        polling_interval: float = 1.0,
        timeout: float | None = None,
        auto_upload: bool = True,
        file_encoding_strategy: FileEncoding = "url",
        idempotency_key: str | None = None,
    ) -> AsyncTask | AsyncIterator[TaskUpdate]:
        """Run an app (``POST /v1/runs``); see the module docstring for wait / stream."""
        prepared = await prepare_inputs(
            input or {}, self._client, auto_upload=auto_upload, file_encoding_strategy=file_encoding_strategy
        )
        body: dict[str, Any] = {"app": app, "input": prepared}
        for key, value in (
            ("setup", setup),
            ("session", session),
            ("session_timeout", session_timeout),
            ("webhook", webhook),
            ("pool", pool),
        ):
            if value is not None:
                body[key] = value
        if wait and not stream:
            body["wait"] = SERVER_WAIT_S if timeout is None else min(SERVER_WAIT_S, timeout)
        started = time.monotonic()
        data = await self._client.request("POST", "/v1/runs", json=body, idempotency_key=idempotency_key)
        task = AsyncTask(self, data)
        if stream:
            return self.stream(task.id)
        if not wait:
            return task
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return await task.wait(polling_interval=polling_interval, timeout=remaining)

    async def get(self, task_id: str) -> AsyncTask:
        return AsyncTask(self, await self._get_raw(task_id))

    async def _get_raw(self, task_id: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._client.request("GET", _path(task_id))
        return data

    async def list(
        self, *, app: str | None = None, status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> TaskPage:
        """A page of tasks, newest first; pass ``next_cursor`` back as ``cursor`` for the next one."""
        params = {"app": app, "status": status, "limit": limit, "cursor": cursor}
        return TaskPage.model_validate(await self._client.request("GET", "/v1/tasks", params=params))

    async def cancel(self, task_id: str) -> AsyncTask:
        return await AsyncTask(self, {"id": task_id, "status": "unknown"}).cancel()

    async def stream(self, task_id: str) -> AsyncIterator[TaskUpdate]:
        """Events of a task (``GET /v1/tasks/{id}/events``) until it is terminal."""
        events = await self._client.stream("GET", f"{_path(task_id)}/events", parse=TaskUpdate.model_validate)
        async with events:
            async for update in events:
                yield update

    async def end_session(self, session_id: str) -> None:
        """End a session (``DELETE /v1/sessions/{id}``); its instance is dropped."""
        await self._client.request("DELETE", f"/v1/sessions/{quote(session_id, safe='')}")


class Tasks:
    """Blocking twin of :class:`AsyncTasks`."""

    def __init__(self, inner: AsyncTasks, portal: Portal) -> None:
        self._async = inner
        self._portal = portal

    def run(
        self,
        app: str,
        input: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        stream: bool = False,
        **kwargs: Any,
    ) -> Task | Iterator[TaskUpdate]:
        """See :meth:`AsyncTasks.run`."""
        try:
            result = self._portal.call(self._async.run(app, input, wait=wait, stream=stream, **kwargs))
        except TaskFailedError as err:
            if isinstance(err.task, AsyncTask):
                err.task = Task(err.task, self._portal)
            raise
        if isinstance(result, AsyncTask):
            return Task(result, self._portal)
        return self._portal.iterate(result)

    def get(self, task_id: str) -> Task:
        return Task(self._portal.call(self._async.get(task_id)), self._portal)

    def list(self, **kwargs: Any) -> TaskPage:
        return self._portal.call(self._async.list(**kwargs))

    def cancel(self, task_id: str) -> Task:
        return Task(self._portal.call(self._async.cancel(task_id)), self._portal)

    def stream(self, task_id: str) -> Iterator[TaskUpdate]:
        return self._portal.iterate(self._async.stream(task_id))

    def end_session(self, session_id: str) -> None:
        self._portal.call(self._async.end_session(session_id))


def _path(task_id: str) -> str:
    return f"/v1/tasks/{quote(task_id, safe='')}"


def _failed(task: _TaskData) -> TaskFailedError:
    error = task.error or {}
    message = error.get("message") or f"task {task.status}"
    return TaskFailedError(f"task {task.id} {task.status}: {message}", code=error.get("code"), task=task)


# -- module-level run -----------------------------------------------------------

_default_lock = threading.Lock()
_default_sync: Client | None = None
_default_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = weakref.WeakKeyDictionary()


def _embedded_from_env() -> bool:
    if os.environ.get("RUNYARD_BASE_URL"):
        return False
    return os.environ.get("RUNYARD_EMBEDDED", "").lower() in ("1", "true", "yes") or bool(
        os.environ.get("RUNYARD_CONFIG")
    )


def default_client() -> Client:
    """The process-wide client ``runyard.run`` uses (from the environment; closed at exit)."""
    global _default_sync
    with _default_lock:
        if _default_sync is None:
            from runyard.client._client import Client

            _default_sync = Client.embedded() if _embedded_from_env() else Client()
            atexit.register(_default_sync.close)
        return _default_sync


def run(app: str, input: dict[str, Any] | None = None, **kwargs: Any) -> Task | Iterator[TaskUpdate]:
    """``Client().run(...)`` on the default client (see the module docstring)."""
    return default_client().tasks.run(app, input, **kwargs)


async def async_run(
    app: str, input: dict[str, Any] | None = None, **kwargs: Any
) -> AsyncTask | AsyncIterator[TaskUpdate]:
    """``await AsyncClient().run(...)`` on a default client for the running event loop."""
    from runyard.client._client import AsyncClient

    loop = asyncio.get_running_loop()
    client = _default_async.get(loop)
    if client is None:
        client = AsyncClient.embedded() if _embedded_from_env() else AsyncClient()
        _default_async[loop] = client
    return await client.tasks.run(app, input, **kwargs)
