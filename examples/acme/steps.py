"""Functions the ``acme/triage`` workflow calls (``function: "acme.steps:clean"``); the module is in
``[apps] modules``, which is what allows a workflow to call it."""

from __future__ import annotations


def clean(text: str) -> dict[str, str]:
    """Collapse whitespace."""
    return {"text": " ".join(text.split())}


def score(x: float) -> dict[str, float]:
    """One score, doubled (a map block runs this once per item)."""
    return {"score": 2 * x}
