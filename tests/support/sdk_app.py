"""Helpers for the SDK tests: a scriptable Starlette app and a real uvicorn server in a thread.

The same app is reached two ways: over TCP (uvicorn on 127.0.0.1, random port) and
in-process through :class:`runyard.client.ASGITransport`; ``Target`` hides which.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from runyard.client import ASGITransport
from support.loopback import LoopbackServer

__all__ = ["AppState", "Target", "make_app", "serve", "sse", "wait_for"]

GATE_TIMEOUT_S = 5.0


def sse(payload: Any) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": code}}


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Poll ``predicate`` (for effects in the server thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@dataclass
class AppState:
    """What the app saw, shared by the uvicorn thread and the test (keys are per test)."""

    attempts: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    markers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    gates: dict[str, threading.Event] = field(default_factory=lambda: defaultdict(threading.Event))


async def _wait_gate(gate: threading.Event) -> None:
    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not gate.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110 - a cross-thread flag
        await asyncio.sleep(0.01)


def make_app(state: AppState) -> Starlette:
    """Scripted endpoints; ``{key}`` separates the state of concurrent tests."""

    async def record(request: Request) -> dict[str, Any]:
        body = await request.body()
        entry = {
            "method": request.method,
            "idempotency_key": request.headers.get("idempotency-key"),
            "retry_count": request.headers.get("x-runyard-retry-count"),
            "body": body.decode(),
        }
        state.attempts[request.path_params.get("key", "")].append(entry)
        return entry

    async def flaky(request: Request) -> Response:
        """Fail ``fails`` times with ``status`` (and Retry-After headers), then succeed."""
        await record(request)
        key = request.path_params["key"]
        q = request.query_params
        n = len(state.attempts[key])
        if n <= int(q.get("fails", "0")):
            status = int(q.get("status", "503"))
            headers = {}
            if "retry_after" in q:
                headers["Retry-After"] = q["retry_after"]
            if "retry_after_ms" in q:
                headers["retry-after-ms"] = q["retry_after_ms"]
            return JSONResponse(error_body("busy", f"attempt {n} failed"), status, headers=headers)
        return JSONResponse({"attempts": n})

    async def echo(request: Request) -> Response:
        body = await request.body()
        scope = request.scope
        return JSONResponse(
            {
                "method": request.method,
                "path": scope["path"],
                "raw_path": scope["raw_path"].decode(),
                "query_string": scope["query_string"].decode(),
                "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
                "http_version": scope["http_version"],
                "scheme": scope["scheme"],
                "root_path": scope["root_path"],
                "client": list(scope["client"]) if scope.get("client") else None,
                "server": list(scope["server"]) if scope.get("server") else None,
                "body": body.decode(),
            }
        )

    async def sleep(request: Request) -> Response:
        """Answer after ``s`` seconds (or stop when the client goes away)."""
        await record(request)
        deadline = time.monotonic() + float(request.query_params.get("s", "5"))
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                return Response(status_code=499)
            await asyncio.sleep(0.02)
        return JSONResponse({"slept": True})

    async def stream(request: Request) -> Response:
        """SSE scripts: slow (gated), truncated, error, crash, hang."""
        await record(request)
        kind, key = request.path_params["kind"], request.path_params["key"]
        marks = state.markers[key]

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b": keep-alive comment\n\n"
                yield sse({"index": 0, "delta": {"content": "Hel"}, "finish_reason": None})
                if kind == "slow":
                    marks.append("first-sent")
                    await _wait_gate(state.gates[key])
                    marks.append("gate-open" if state.gates[key].is_set() else "gate-timeout")
                if kind == "hang":
                    await asyncio.sleep(GATE_TIMEOUT_S)
                if kind == "crash":
                    raise RuntimeError("app crashed mid-stream")
                yield sse({"index": 0, "delta": {"content": "lo"}, "finish_reason": None})
                if kind == "error":
                    yield sse({"error": {"code": "upstream_error", "message": "provider fell over"}})
                    return
                if kind == "error429":
                    yield sse({"error": {"code": "rate_limited", "message": "slow down", "status": 429}})
                    return
                yield sse(
                    {
                        "index": 0,
                        "delta": {},
                        "finish_reason": "stop",
                        "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
                    }
                )
                if kind != "truncated":
                    yield b"data: [DONE]\n\n"
                marks.append("finished")
            except BaseException as exc:
                marks.append(f"stopped:{type(exc).__name__}")
                raise

        return StreamingResponse(events(), media_type="text/event-stream")

    async def error(request: Request) -> Response:
        status = int(request.path_params["status"])
        headers = {"Retry-After": "7"} if status == 429 else {}
        if request.query_params.get("raw"):
            return Response("<html>bad gateway</html>", status, media_type="text/html")
        body = error_body(request.query_params.get("code", "nope"), "it failed")
        body["error"]["details"] = {"field": "x"}
        return JSONResponse(body, status, headers=headers)

    async def not_json(request: Request) -> Response:
        return Response("this is not json", media_type="application/json")

    return Starlette(
        routes=[
            Route("/flaky/{key}", flaky, methods=["GET", "POST"]),
            Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT"]),
            Route("/sleep/{key}", sleep, methods=["GET", "POST"]),
            Route("/sse/{kind}/{key}", stream, methods=["GET", "POST"]),
            Route("/error/{status:int}", error, methods=["GET", "POST"]),
            Route("/not-json", not_json, methods=["GET", "POST"]),
        ]
    )


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread on 127.0.0.1:<random>; yields its URL."""
    with LoopbackServer(app, start_timeout=10) as server:
        yield server.url


@dataclass
class Target:
    """The test app reached over TCP (``uvicorn``) or in-process (``asgi``)."""

    mode: str
    base_url: str
    state: AppState
    app: Starlette

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport() if self.mode == "uvicorn" else ASGITransport(self.app)


@contextlib.contextmanager
def live_target() -> Iterator[Callable[[str], Target]]:
    """Start one uvicorn server; yields a factory of targets for either mode."""
    state = AppState()
    tcp_app, asgi_app = make_app(state), make_app(state)
    with serve(tcp_app) as url:

        def target(mode: str) -> Target:
            if mode == "uvicorn":
                return Target(mode, url, state, tcp_app)
            return Target(mode, "http://testserver", state, asgi_app)

        yield target
