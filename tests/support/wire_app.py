"""The ASGI app of tests/test_wire.py, served in a process of its own (a server thread in the
test's process would share its GIL with the reading client and hide how writes are split).

    python tests/support/wire_app.py PORT PROTOCOL   # PROTOCOL: gathering | httptools
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvicorn

BODY = b'{"answer":"' + b"x" * 200 + b'"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/slow-body":  # the head, then the body a while later
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await asyncio.sleep(0.8)
        await send({"type": "http.response.body", "body": b"late"})
        return
    if path == "/events":  # three events in one turn, then one more after a pause
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for n in range(3):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % n, "more_body": True})
        await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"data: last\n\n", "more_body": False})
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    from runyard.server.wire import GatheringHttpToolsProtocol

    port, protocol = int(sys.argv[1]), sys.argv[2]
    http: Any = GatheringHttpToolsProtocol if protocol == "gathering" else protocol
    uvicorn.run(app, host="127.0.0.1", port=port, http=http, log_level="warning", lifespan="off")
