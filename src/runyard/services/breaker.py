"""Circuit breakers per route: a route failing repeatedly is skipped for a cool-down."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class _State:
    failures: int = 0
    opened_at: float | None = None
    total_failures: int = 0
    total_successes: int = 0


class CircuitBreakers:
    """Closed → open after ``threshold`` consecutive failures → half-open after ``cooldown_s``
    (one trial request; success closes, failure re-opens)."""

    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._states: dict[str, _State] = {}

    def allows(self, route: str) -> bool:
        state = self._states.get(route)
        if state is None or state.opened_at is None:
            return True
        if time.monotonic() - state.opened_at >= self.cooldown_s:
            state.opened_at = time.monotonic()  # half-open: this caller is the trial; others wait a cool-down
            return True
        return False

    def success(self, route: str) -> None:
        state = self._states.get(route)
        if state is None:
            state = self._states[route] = _State()
        state.failures = 0
        state.opened_at = None
        state.total_successes += 1

    def failure(self, route: str) -> None:
        state = self._states.setdefault(route, _State())
        state.failures += 1
        state.total_failures += 1
        if state.failures >= self.threshold:
            state.opened_at = time.monotonic()

    def status(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        out = {}
        for route, s in sorted(self._states.items()):
            is_open = s.opened_at is not None and now - s.opened_at < self.cooldown_s
            out[route] = {
                "state": "open" if is_open else ("half_open" if s.opened_at is not None else "closed"),
                "consecutive_failures": s.failures,
                "failures": s.total_failures,
                "successes": s.total_successes,
                "retry_in_s": round(self.cooldown_s - (now - s.opened_at), 1) if is_open and s.opened_at else 0,
            }
        return out
