"""Request ids and what a request did, for its access-log line.

One :class:`RequestInfo` per HTTP request lives in a context variable: error bodies, log
lines and inference rows written anywhere below the HTTP edge carry its id, and the AI
service notes the model, provider and tokens on it (it is a mutable object, so a stream's
body, iterated in a task of its own, still reaches it).
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar

from . import tracing

REQUEST_ID_HEADER = b"x-request-id"

# What a caller may send: 1-128 characters of letters, digits and ``-_.:``; anything else
# (empty, too long, spaces, control characters) is replaced by an id of our own.
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


class RequestInfo:
    __slots__ = ("input_tokens", "model", "output_tokens", "provider", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.model: str | None = None
        self.provider: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0


current_request: ContextVar[RequestInfo | None] = ContextVar("runyard_request", default=None)


def new_request_id() -> str:
    """A fresh id: ``req_`` and 24 hex digits (96 random bits).

    From ``random`` (reseeded in each forked process), not ``os.urandom``: an id must be unique,
    not secret, and a ``getrandom`` system call per request measured 3% of the hot path's CPU."""
    return f"req_{random.getrandbits(96):024x}"


def request_id_from(raw: bytes | None) -> str:
    """The caller's id when well formed, else a new one."""
    if raw is not None and _WELL_FORMED.fullmatch(raw):
        return raw.decode("ascii")
    return new_request_id()


def current_request_id() -> str | None:
    info = current_request.get()
    return None if info is None else info.request_id


def current_ids() -> tuple[str | None, str | None] | None:
    """(request id, trace id) of the work in progress, for the inference row; None when neither."""
    info = current_request.get()
    trace_id = tracing.current_trace_id()
    if info is None and trace_id is None:
        return None
    return (None if info is None else info.request_id), trace_id
