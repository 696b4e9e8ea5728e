"""The public clients: :class:`AsyncClient` and its blocking twin :class:`Client`."""

from __future__ import annotations

import contextlib
import gc
import os
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from runyard.client._base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, AsyncAPIClient
from runyard.client._sync import Portal, fast_loop
from runyard.client._transports import ASGITransport
from runyard.client.agents import Agent, Agents, AsyncAgent, AsyncAgents
from runyard.client.ai import AI, AsyncAI
from runyard.client.files import AsyncFiles, Files
from runyard.client.limits import RateLimitInfo, UsageLimits, UsageReport
from runyard.client.tasks import AsyncTask, AsyncTasks, Task, Tasks, TaskUpdate
from runyard.client.types import FeedbackResult
from runyard.client.workflows import AsyncJobs, AsyncWorkflows, Jobs, Workflows

if TYPE_CHECKING:
    from runyard.config import RunyardConfig

__all__ = ["EMBEDDED_BASE_URL", "AsyncClient", "Client"]

EMBEDDED_BASE_URL = "http://runyard.embedded"


class AsyncClient(AsyncAPIClient):
    """Async Runyard client over HTTP, or in-process with :meth:`embedded`.

    ``base_url`` defaults to ``$RUNYARD_BASE_URL`` (else ``http://127.0.0.1:8000``),
    ``api_key`` to ``$RUNYARD_API_KEY``. ``transport`` replaces the inner httpx transport
    (it is wrapped in a :class:`RetryTransport` unless it already is one).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        default_headers: Mapping[str, str] | None = None,
        lifespan: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            transport=transport,
            default_headers=default_headers,
            lifespan=lifespan,
        )
        self._bind()

    def _bind(self) -> None:
        self.ai = AsyncAI(self)
        self.files = AsyncFiles(self)
        self.tasks = AsyncTasks(self)
        self.workflows = AsyncWorkflows(self)
        self.jobs = AsyncJobs(self)
        self.agents = AsyncAgents(self)

    def agent(self, agent: str | dict[str, Any], *, user: str | None = None) -> AsyncAgent:
        """A conversation with a template agent (``"org/name@latest"``) or an ad-hoc config dict."""
        return AsyncAgent(self, agent, user=user)

    async def run(
        self, app: str, input: dict[str, Any] | None = None, **kwargs: Any
    ) -> AsyncTask | AsyncIterator[TaskUpdate]:
        """Run an app: ``wait``, ``stream``, ``setup``, ``session``, ``session_timeout``, ``webhook``,
        ``pool``, ``polling_interval``, ``timeout``, ``auto_upload``, ``file_encoding_strategy``
        (see :meth:`AsyncTasks.run`)."""
        return await self.tasks.run(app, input, **kwargs)

    async def feedback(
        self,
        metric_name: str,
        value: Any,
        *,
        inference_id: str | None = None,
        episode_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> FeedbackResult:
        """Record a metric value for an inference or an episode (``POST /v1/feedback``)."""
        body: dict[str, Any] = {"metric_name": metric_name, "value": value}
        if inference_id is not None:
            body["inference_id"] = inference_id
        if episode_id is not None:
            body["episode_id"] = episode_id
        if tags:
            body["tags"] = dict(tags)
        data = await self.request("POST", "/v1/feedback", json=body, idempotency_key=idempotency_key)
        return FeedbackResult.model_validate(data)

    async def get_usage_limits(self) -> UsageLimits:
        """Rate limits (sync and async requests) and this period's spend against the limit
        (``GET /v1/usage/limits``, the shape Sim's SDK reads)."""
        return UsageLimits.model_validate(await self.request("GET", "/v1/usage/limits"))

    async def usage(
        self,
        *,
        group_by: str | Sequence[str] = ("key", "model", "day"),
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        key: str | None = None,
    ) -> UsageReport:
        """Requests, tokens and cost aggregated from the recorded inferences (``GET /v1/usage``):
        ``group_by`` among key, model, day, provider; ``since`` inclusive, ``until`` exclusive."""
        params = {
            "group_by": group_by if isinstance(group_by, str) else ",".join(group_by),
            "since": since.isoformat() if isinstance(since, datetime) else since,
            "until": until.isoformat() if isinstance(until, datetime) else until,
            "key": key,
        }
        return UsageReport.model_validate(await self.request("GET", "/v1/usage", params=params))

    @classmethod
    def from_app(cls, app: Any, *, api_key: str | None = None, **kwargs: Any) -> AsyncClient:
        """Serve requests with an ASGI ``app`` in-process; its lifespan runs on first use."""
        return cls._over_app(app, api_key, kwargs)

    @classmethod
    def _over_app(cls, app: Any, api_key: str | None, kwargs: dict[str, Any], *, freeze: bool = False) -> AsyncClient:
        lifespan = None
        router = getattr(app, "router", None)
        if router is not None and hasattr(router, "lifespan_context"):

            def lifespan() -> Any:
                started = router.lifespan_context(app)
                return _gc_frozen_after(started) if freeze else started

        return cls(EMBEDDED_BASE_URL, api_key, transport=ASGITransport(app), lifespan=lifespan, **kwargs)

    @classmethod
    def embedded(
        cls,
        config: RunyardConfig | str | os.PathLike[str] | None = None,
        *,
        api_key: str | None = None,
        **kwargs: Any,
    ) -> AsyncClient:
        """The gateway itself, in this process: no server to run (``config``: a RunyardConfig,
        a ``runyard.toml`` path, or ``None`` for ``$RUNYARD_CONFIG`` / ``./runyard.toml`` / defaults)."""
        from runyard.config import RunyardConfig, load_config
        from runyard.server.app import create_app

        cfg = config if isinstance(config, RunyardConfig) else load_config(config)
        return cls._over_app(create_app(cfg.for_embedded()), api_key, kwargs, freeze=True)


@contextlib.asynccontextmanager
async def _gc_frozen_after(lifespan: AbstractAsyncContextManager[Any]) -> AsyncIterator[None]:
    """Run ``lifespan``; once it has started, keep what start-up built out of the cyclic garbage
    collector's full passes (``gc.freeze()``, as ``runyard serve`` does) until it ends. Scanning
    those objects again and again paused the embedded gateway ~100 ms every few seconds under
    load (async c=32: p99 106 -> 31 ms; bench/README.md, "Figures 2026-12-06, second session")."""
    async with lifespan:
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()


class Client:
    """Blocking Runyard client: an :class:`AsyncClient` driven through a private event loop.

    Same constructor as :class:`AsyncClient` (``transport`` is an async httpx transport).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        self._start(
            lambda: AsyncClient(
                base_url,
                api_key,
                timeout=timeout,
                max_retries=max_retries,
                transport=transport,
                default_headers=default_headers,
            )
        )

    def _start(self, factory: Callable[[], AsyncClient], *, in_process: bool = False) -> None:
        self._portal = Portal(loop_factory=fast_loop if in_process else None)

        async def build() -> AsyncClient:
            return factory()

        try:
            self._async = self._portal.call(build())
        except BaseException:
            self._portal.close()
            raise
        self._view = False
        self._bind()
        if self._async._lifespan is not None:  # embedded: left open, it is closed at exit, quietly
            weakref.finalize(self, _close_quietly, self._portal, self._async)

    def _bind(self) -> None:
        self.ai = AI(self._async.ai, self._portal)
        self.files = Files(self._async.files, self._portal)
        self.tasks = Tasks(self._async.tasks, self._portal)
        self.workflows = Workflows(self._async.workflows, self._portal)
        self.jobs = Jobs(self._async.jobs, self._portal)
        self.agents = Agents(self._async.agents, self._portal)

    def with_options(self, *, max_retries: int | None = None, timeout: float | httpx.Timeout | None = None) -> Client:
        """See :meth:`AsyncClient.with_options`; the view shares this client's loop and pool
        (closing it does nothing)."""
        view = Client.__new__(Client)
        view._portal = self._portal
        view._async = self._async.with_options(max_retries=max_retries, timeout=timeout)
        view._view = True
        view._bind()
        return view

    def agent(self, agent: str | dict[str, Any], *, user: str | None = None) -> Agent:
        """See :meth:`AsyncClient.agent`."""
        return Agent(self._async.agent(agent, user=user), self._portal)

    def run(self, app: str, input: dict[str, Any] | None = None, **kwargs: Any) -> Task | Iterator[TaskUpdate]:
        """Run an app and (by default) wait for it; see :meth:`AsyncTasks.run`."""
        return self.tasks.run(app, input, **kwargs)

    @classmethod
    def _from_factory(cls, factory: Callable[[], AsyncClient]) -> Client:
        """A client around ``factory``'s in-process AsyncClient (from_app, embedded)."""
        self = cls.__new__(cls)
        self._start(factory, in_process=True)
        return self

    @classmethod
    def from_app(cls, app: Any, *, api_key: str | None = None, **kwargs: Any) -> Client:
        """See :meth:`AsyncClient.from_app`."""
        return cls._from_factory(lambda: AsyncClient.from_app(app, api_key=api_key, **kwargs))

    @classmethod
    def embedded(
        cls,
        config: RunyardConfig | str | os.PathLike[str] | None = None,
        *,
        api_key: str | None = None,
        **kwargs: Any,
    ) -> Client:
        """See :meth:`AsyncClient.embedded`."""
        return cls._from_factory(lambda: AsyncClient.embedded(config, api_key=api_key, **kwargs))

    @property
    def base_url(self) -> str:
        return self._async.base_url

    @property
    def async_client(self) -> AsyncClient:
        """The underlying async client (it lives on the portal's loop)."""
        return self._async

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """See :meth:`AsyncAPIClient.request`."""
        return self._portal.call(self._async.request(method, path, **kwargs))

    def feedback(
        self,
        metric_name: str,
        value: Any,
        *,
        inference_id: str | None = None,
        episode_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> FeedbackResult:
        """Record a metric value for an inference or an episode (``POST /v1/feedback``)."""
        return self._portal.call(
            self._async.feedback(
                metric_name,
                value,
                inference_id=inference_id,
                episode_id=episode_id,
                tags=tags,
                idempotency_key=idempotency_key,
            )
        )

    def get_rate_limit_info(self) -> RateLimitInfo | None:
        """See :meth:`AsyncAPIClient.get_rate_limit_info`."""
        return self._async.get_rate_limit_info()

    def get_usage_limits(self) -> UsageLimits:
        """See :meth:`AsyncClient.get_usage_limits`."""
        return self._portal.call(self._async.get_usage_limits())

    def usage(
        self,
        *,
        group_by: str | Sequence[str] = ("key", "model", "day"),
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        key: str | None = None,
    ) -> UsageReport:
        """See :meth:`AsyncClient.usage`."""
        return self._portal.call(self._async.usage(group_by=group_by, since=since, until=until, key=key))

    def close(self) -> None:
        """Close the async client (and the embedded app's lifespan), then stop the loop."""
        if self._view or self._portal.closed:
            return
        try:
            self._portal.call(self._async.aclose())
        finally:
            self._portal.close()

    def __enter__(self) -> Client:
        if self._async._lifespan is not None:
            self._portal.call(self._async.__aenter__())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _close_quietly(portal: Portal, client: AsyncClient) -> None:
    """Close an embedded client nobody closed (garbage-collected, or at interpreter exit): its
    gateway's tasks end here instead of being reported as "destroyed but pending"."""
    if portal.closed:
        return
    try:
        portal.call(client.aclose())
    except Exception:  # best effort at exit
        pass
    finally:
        portal.close()
