"""Functions for workflow ``function`` blocks that take files (module listed in ``[apps] modules``)."""

from __future__ import annotations

from typing import Any

import runyard


def describe(doc: runyard.File, others: list[runyard.File] | None = None) -> dict[str, Any]:
    """A ``runyard.File`` parameter gets a readable file: its name, size and upper-cased text."""
    data = doc.read_bytes()
    return {
        "filename": doc.filename,
        "size": len(data),
        "upper": data.decode().upper(),
        "others": [len(f.read_bytes()) for f in others or []],
    }


def shout_file(text: str) -> runyard.File:
    """A file output made by a function block."""
    return runyard.File(data=text.upper().encode(), filename="shout.txt", content_type="text/plain")
