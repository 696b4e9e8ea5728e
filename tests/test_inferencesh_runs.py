"""The inference.sh adapter's run state (server/inferencesh_runs.py): one run per chat, waited on
or cancelled as the routes and the app's shutdown need."""

from __future__ import annotations

import asyncio

from runyard.server.inferencesh_runs import InferenceshRuns, Run


async def test_runs_are_reused_while_open_and_cancelled_at_shutdown() -> None:
    runs = InferenceshRuns()
    started = asyncio.Event()

    async def forever(run: Run) -> None:
        run.push("delta", {"seq": 1})
        started.set()
        await asyncio.sleep(3600)

    first = runs.start("chat-1", forever, new=True)
    await started.wait()
    assert first.running and first.events == [b'{"event":"delta","data":{"seq":1}}\n']
    await runs.settle("chat-1", timeout=0.05)  # gives up waiting: the run goes on
    assert first.running

    async def waits_for_a_tool(run: Run) -> None:
        run.push("chat_messages", {})

    async def finishes(run: Run) -> None:
        run.push("chats", {})
        run.closed = True

    open_run = runs.start("chat-2", waits_for_a_tool, new=False)
    await runs.settle("chat-2")
    assert runs.start("chat-2", finishes, new=False) is open_run  # the tool result goes on the same run
    await runs.settle("chat-2")
    assert open_run.closed and len(open_run.events) == 2
    assert runs.start("chat-2", finishes, new=False) is not open_run  # that run is over: a new one

    await runs.aclose()
    assert first.task is not None and first.task.cancelled()
