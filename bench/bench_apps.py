"""The app the task load bench runs (``[apps] modules = ["bench_apps"]``)."""

from __future__ import annotations

import runyard


@runyard.app("bench/quick", version="1.0.0")
async def quick(input: dict) -> dict:
    """Returns its input's ``n``: each task's output identifies it."""
    return {"n": input["n"]}
