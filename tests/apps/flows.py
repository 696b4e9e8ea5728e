"""Functions that workflow ``function`` blocks call in the tests (module listed in ``[apps] modules``)."""

from __future__ import annotations

import asyncio
from typing import Any

from runyard.files import File


def shout(text: str) -> dict[str, Any]:
    return {"text": text.upper(), "length": len(text)}


def square(x: int) -> int:
    return x * x


async def slow_square(x: int, delay: float = 0.05) -> int:
    await asyncio.sleep(delay)
    return x * x


def total(values: list[int]) -> int:
    return sum(values)


def boom(**_: Any) -> None:
    raise RuntimeError("kaboom")


_calls: dict[str, int] = {}


def flaky(key: str) -> str:
    """Fails on the first call per key, then succeeds (for retry tests)."""
    _calls[key] = _calls.get(key, 0) + 1
    if _calls[key] < 2:
        raise RuntimeError("try again")
    return "ok"


def invert(image: File) -> File:
    """Return an input file's bytes inverted, as an output File."""
    data = image.read_bytes()
    return File(data=bytes(255 - b for b in data), filename="out.png", content_type="image/png")
