"""Runyard's embedded client as an adapter for the shared in-process harness
(``../shared/bench/inproc_bench.py --client bench.inproc_runyard:embedded``), so one command compares
Runyard embedded, TensorZero embedded and the openai SDK in the same session (bench/README.md).

The gateway runs in the benchmark's process from a throwaway config: provider ``mock`` (openai kind)
at the harness's ``--base-url``, the model it names, SQLite in a temporary folder with inference
recording on (the embedded default), no shipped catalog (no local model loads).
``RUNYARD_INPROC_RECORD=0`` turns recording off (TensorZero's embedded gateway records nothing
without ClickHouse).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

MESSAGES = [{"role": "user", "content": "Say hello."}]


def _config(base_url: str, model: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="runyard-inproc-"))
    record = os.environ.get("RUNYARD_INPROC_RECORD", "1") != "0"
    path = folder / "runyard.toml"
    path.write_text(
        f"""
[storage]
url = "sqlite+aiosqlite:///{folder / "runyard.db"}"
record_inferences = {"true" if record else "false"}

[catalog]
defaults = false

[providers.mock]
kind = "openai"
base_url = "{base_url}"

[models.{model}]
routes = ["mock::{model}"]
"""
    )
    return path


class _Embedded:
    def __init__(self, base_url: str, model: str, api: str, mode: str) -> None:
        from runyard import AsyncClient, Client

        config = _config(base_url, model)
        self.model, self.stream = model, mode == "stream"
        self.kw: dict[str, Any] = {"model": model, "max_tokens": 16, "stream": self.stream}
        if api == "async":
            self.aclient = AsyncClient.embedded(config, max_retries=0)
        else:
            self.client = Client.embedded(config, max_retries=0)

    async def acall(self) -> Any:
        return await self.aclient.ai.chat(MESSAGES, **self.kw)

    def call(self) -> Any:
        return self.client.ai.chat(MESSAGES, **self.kw)


def embedded(base_url: str, model: str, api: str, mode: str) -> _Embedded:
    """The harness's adapter factory: ``ATTR(base_url, model, api, mode)``."""
    return _Embedded(base_url, model, api, mode)
