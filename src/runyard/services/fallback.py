"""Routes tried in order: the one fallback loop behind chat, streams, embeddings and media.

A route that fails with an error worth retrying elsewhere (connection errors, timeouts, 429,
5xx: :func:`~runyard.providers.can_fall_back`) hands over to the next; any other error, or
the last route's, is raised with every attempt listed in its ``details``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from ..errors import RunyardError
from ..inference import Attempt
from ..providers import can_fall_back
from ..telemetry import tracing
from ..telemetry.inference import InferenceTelemetry
from ..telemetry.tracing import NOOP
from .breaker import CircuitBreakers

__all__ = ["aclose_quietly", "attempts_json", "first_delta", "first_success", "with_attempts"]


class RouteLike(Protocol):
    @property
    def provider(self) -> Any: ...  # has ``.name``

    @property
    def model(self) -> str: ...

    @property
    def key(self) -> str: ...


R = TypeVar("R", bound=RouteLike)
T = TypeVar("T")
X = TypeVar("X")


async def first_success(
    routes: Sequence[R],
    call: Callable[[R], Awaitable[T]],
    attempts: list[Attempt],
    breakers: CircuitBreakers | None = None,
    *,
    count_success: bool = True,
    on_error: Callable[[R, RunyardError], None] | None = None,
    telemetry: InferenceTelemetry | None = None,
    operation: str = "chat",
) -> tuple[T, R]:
    """``call`` each route until one succeeds: (its result, the route). Every try is appended to
    ``attempts``; ``breakers`` hear of failures (and of the success, unless ``count_success`` is
    False: a stream counts once it has finished); ``on_error`` sees the route that gave up;
    ``telemetry`` hears of each attempt (a span per attempt, named for ``operation``, when tracing)."""
    for i, route in enumerate(routes):
        started = time.perf_counter()
        span = (
            InferenceTelemetry.attempt_span(operation, route.provider.name, route.model, i)
            if tracing.enabled()
            else NOOP
        )
        with span:
            try:
                result = await call(route)
            except RunyardError as err:
                attempts.append(Attempt(route.provider.name, route.model, err.message, err.code))
                retry = can_fall_back(err)
                if telemetry is not None:
                    next_route = routes[i + 1] if retry and i + 1 < len(routes) else None
                    where = f"{next_route.provider.name}::{next_route.model}" if next_route is not None else None
                    telemetry.attempt_failed(span, route.provider.name, route.model, err, started, where)
                if retry:
                    if breakers is not None:
                        breakers.failure(route.key)
                    if i + 1 < len(routes):
                        continue
                if on_error is not None:
                    on_error(route, err)
                raise with_attempts(err, attempts) from None
        if breakers is not None and count_success:
            breakers.success(route.key)
        if telemetry is not None:
            telemetry.attempt_ok(route.provider.name)
        attempts.append(Attempt(route.provider.name, route.model))
        return result, route
    raise AssertionError("unreachable: at least one route")


async def first_delta(upstream: AsyncIterator[X], empty: X) -> tuple[X, AsyncIterator[X]]:
    """(the first item, the rest) of a stream, so a failure to start is an ordinary error that can
    fall back; ``empty`` when it ends at once. The stream is closed if starting fails."""
    try:
        first = await anext(upstream)
    except StopAsyncIteration:
        first = empty
    except BaseException:
        await aclose_quietly(upstream)
        raise
    return first, upstream


async def aclose_quietly(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


def attempts_json(attempts: list[Attempt]) -> list[dict[str, Any]]:
    return [{"provider": a.provider, "model": a.model, "code": a.code, "error": a.error} for a in attempts]


def with_attempts(err: RunyardError, attempts: list[Attempt]) -> RunyardError:
    """``err`` with ``details.attempts`` when more than one route was tried."""
    if len(attempts) > 1:
        err.details = {"attempts": attempts_json(attempts)}
    return err
