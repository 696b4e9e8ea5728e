"""The inference recorder over a real SQLite store: shutdown while a batch is being written."""

from __future__ import annotations

import asyncio
import itertools
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runyard.backends.recorder import ENTRY_OVERHEAD, InferenceRecorder, RecordingError
from runyard.backends.store import Store, _sqlite_insert, new_id, utcnow
from runyard.inference import ChatOutcome, ChatRequest, EmbedOutcome
from runyard.services.ai import CallContext
from runyard.services.recording import InferenceFiler


def _row(inference_id: str) -> dict[str, Any]:
    return {
        "id": inference_id, "episode_id": None, "kind": "chat", "model": "m", "provider": "p",
        "provider_model": "m", "input": {"messages": [{"role": "user", "content": "x" * 400}]},
        "output": {"content": "y" * 400}, "input_tokens": 1, "output_tokens": 1, "cached_tokens": 0,
        "reasoning_tokens": 0, "latency_ms": 1.0, "ttft_ms": None, "status": "ok", "error": None,
        "attempts": [], "api_key_id": None, "tags": {}, "created_at": utcnow(), "cost": 0.0, "cache_hit": False,
    }  # fmt: skip


def _transactions(store: Store) -> Callable[[], int]:
    """A counter of the transactions committed from now on: the recorder's own connection's for a
    SQLite file (backends/sqlite_writer.py), the engine's otherwise (Postgres: a COPY each)."""
    commits: list[int] = []
    sa.event.listen(store.engine.sync_engine, "commit", lambda _conn: commits.append(1))
    writer = store.batch_writer
    start = writer.transactions if writer is not None else 0
    return lambda: len(commits) + (writer.transactions - start if writer is not None else 0)


async def test_close_during_a_write_loses_nothing_and_leaves_no_lock(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await store.start()
    recorder = InferenceRecorder(store, flush_interval_s=0.001, batch_size=500, max_buffer=100_000)
    await recorder.start()
    ids = [new_id() for _ in range(20_000)]
    for inference_id in ids:
        recorder.record(inference_id, None, lambda i=inference_id: _row(i))
    # let the writer take its first batches, then close while an INSERT is in flight
    for _ in range(10_000):
        if recorder.written:
            break
        await asyncio.sleep(0)
    await asyncio.sleep(0.002)
    await asyncio.wait_for(recorder.aclose(), timeout=60)  # a lock left behind stalls here (busy_timeout)
    assert await store.count_inferences() == len(ids)
    assert not any(recorder.is_pending(i) for i in ids)
    await store.aclose()


async def test_rows_written_in_multi_row_inserts_read_back_whole(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await store.start()
    rows = [_row(new_id()) for _ in range(1_101)]  # three INSERTs (500, 500, 101), converted 100 at a time
    rows[-1].update(cache_hit=True, tags={"team": "a"}, attempts=[{"provider": "p", "model": "m"}])
    await store.insert_inferences(rows)
    assert await store.count_inferences() == 1_101
    for sent in (rows[0], rows[550], rows[-1]):
        got = await store.get_inference(sent["id"])
        assert got is not None
        for field in ("input", "output", "tags", "attempts", "status", "input_tokens", "cost"):
            assert got[field] == sent[field], field
        assert bool(got["cache_hit"]) is sent["cache_hit"]
        assert got["created_at"].replace(tzinfo=None) == sent["created_at"].replace(tzinfo=None)
    await store.aclose()


async def test_batches_of_any_size_use_few_statement_shapes(tmp_path: Path) -> None:
    """The driver keeps each distinct INSERT it prepared (128 per connection): batch sizes from 1 to
    1,100 must come down to a handful of shapes, or that cache grows the process by ~100 MB."""
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await store.start()
    _sqlite_insert.cache_clear()
    sizes = [*range(1, 130), 255, 256, 257, 499, 500, 501, 777, 1_100]
    for n in sizes:
        await store.insert_inferences([_row(new_id()) for _ in range(n)])
    assert await store.count_inferences() == sum(sizes)
    assert _sqlite_insert.cache_info().misses <= 10  # 500 and the powers of two below it
    await store.aclose()


@pytest.mark.parametrize("bound", ["rows", "bytes"])
async def test_failed_batch_keeps_its_place_and_overflow_drops_the_newest(tmp_path: Path, bound: str) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await store.start()
    async with store.engine.begin() as conn:  # the database refuses every insert
        await conn.exec_driver_sql("DROP TABLE inferences")
    size = 500  # each row's payload: 30 of them fill the byte budget
    limits = (
        {"max_buffer": 30}
        if bound == "rows"
        else {"max_buffer": 1_000, "max_buffer_bytes": 30 * (ENTRY_OVERHEAD + size)}
    )
    recorder = InferenceRecorder(store, flush_interval_s=60, batch_size=10, max_rows_per_write=10, **limits)
    ids = [new_id() for _ in range(40)]
    for inference_id in ids[:30]:
        recorder.record(inference_id, None, lambda i=inference_id: _row(i), size)
    flushing = asyncio.ensure_future(recorder.flush())
    await asyncio.sleep(0)  # the flush has taken ids[0:10] and waits on its INSERT
    for inference_id in ids[30:]:  # the buffer fills up meanwhile
        recorder.record(inference_id, None, lambda i=inference_id: _row(i), size)
    with pytest.raises(Exception, match=r"no such table|does not exist"):  # SQLite | Postgres
        await flushing
    assert recorder.dropped == 10  # the newest made room for the failed batch
    assert all(recorder.is_pending(i) for i in ids[:30])
    assert not any(recorder.is_pending(i) for i in ids[30:])
    await store.aclose()


async def test_a_backlog_is_written_in_few_transactions_without_holding_the_loop(tmp_path: Path) -> None:
    """5,000 waiting rows: three transactions (2,000 rows at most each), and other tasks get a
    turn after every slice of 100 rows built."""
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await store.start()
    transactions = _transactions(store)
    recorder = InferenceRecorder(store, flush_interval_s=60, batch_size=100, max_buffer=100_000)
    ids = [new_id() for _ in range(5_000)]
    built = 0

    def builder(inference_id: str) -> dict[str, Any]:
        nonlocal built
        built += 1
        return _row(inference_id)

    for inference_id in ids:
        recorder.record(inference_id, None, lambda i=inference_id: builder(i))
    seen = [0]  # rows built, as another task saw it at each of its turns
    stop = False

    async def other_task() -> None:
        while not stop:
            seen.append(built)
            await asyncio.sleep(0)

    other = asyncio.ensure_future(other_task())
    await recorder.flush()
    stop = True
    await other
    assert transactions() == 3
    assert await store.count_inferences() == 5_000
    assert recorder.stats() == {"buffered": 0, "buffered_bytes": 0, "written": 5_000, "dropped": 0}
    assert max(b - a for a, b in itertools.pairwise(seen)) <= 100
    await store.aclose()


async def test_a_flush_cancelled_while_building_puts_its_rows_back(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await store.start()
    recorder = InferenceRecorder(store, flush_interval_s=60, batch_size=100, max_buffer=100_000)
    ids = [new_id() for _ in range(1_000)]
    built = 0
    first_slice = asyncio.Event()

    def builder(inference_id: str) -> dict[str, Any]:
        nonlocal built
        built += 1
        if built == 100:
            first_slice.set()
        return _row(inference_id)

    for inference_id in ids:
        recorder.record(inference_id, None, lambda i=inference_id: builder(i))
    flushing = asyncio.ensure_future(recorder.flush())
    await first_slice.wait()  # the first slice is built; the flush waits for its next turn
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert built < 1_000
    assert recorder.stats()["buffered"] == 1_000
    assert all(recorder.is_pending(i) for i in ids)
    await recorder.flush()
    assert await store.count_inferences() == 1_000
    await store.aclose()


async def test_rows_arriving_steadily_are_written_a_whole_batch_at_a_time(tmp_path: Path) -> None:
    """Under a steady trickle the writer waits for ``batch_size`` rows (or the interval): it used to
    drain the buffer to empty, writing the few rows that came in during each write, without end."""
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await store.start()
    transactions = _transactions(store)
    recorder = InferenceRecorder(store, flush_interval_s=60, batch_size=50, max_buffer=100_000)
    await recorder.start()
    ids = [new_id() for _ in range(1_000)]
    for inference_id in ids:
        recorder.record(inference_id, None, lambda i=inference_id: _row(i))
        await asyncio.sleep(0.0005)  # a request every half millisecond
    written = transactions()
    assert written <= len(ids) // 50 + 1, written  # whole batches only (the last may wait)
    await recorder.aclose()
    assert await store.count_inferences() == 1_000
    await store.aclose()


async def test_a_batch_that_fails_midway_leaves_no_rows_and_the_next_is_written(tmp_path: Path) -> None:
    """A batch is one transaction (on SQLite, on the recorder's own connection, over several
    INSERTs): a row that fails rolls the earlier ones back, and the next batch is written."""
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await store.start()
    transactions = _transactions(store)
    first = _row(new_id())
    duplicate = dict(first)  # the same primary key twice: the second INSERT fails
    with pytest.raises(Exception, match=r"UNIQUE constraint failed|duplicate key"):  # SQLite | Postgres
        await store.insert_inferences([first, *(_row(new_id()) for _ in range(300)), duplicate])
    assert await store.count_inferences() == 0
    await store.insert_inferences([first])
    assert await store.count_inferences() == 1
    assert transactions() == 1
    await store.aclose()


async def test_a_store_closed_twice_and_used_again_writes_its_rows(tmp_path: Path) -> None:
    """As the engine reconnects after ``dispose``, the rows written after ``aclose`` land (on
    SQLite the recorder's own connection and thread open again)."""
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await store.start()
    await store.insert_inferences([_row(new_id())])
    await store.aclose()
    await store.aclose()
    await store.insert_inferences([_row(new_id()), _row(new_id())])
    assert await store.count_inferences() == 3
    await store.aclose()


async def test_a_buffered_embedding_row_does_not_keep_the_vectors(tmp_path: Path) -> None:
    """Rows wait in the buffer until written (up to ``max_buffer`` of them while the database is
    down): an embedding's row must not hold the answer's vectors there. 200 answers of one
    3,072-wide vector are ~20 MB of Python floats; what stays buffered is a fraction of one."""
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    recorder = InferenceRecorder(store, flush_interval_s=60, batch_size=10_000, max_buffer=100_000)
    filer = InferenceFiler(recorder)
    ids = []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            vector = [i + j / 3072 for j in range(3072)]  # distinct float objects, as a decoded answer has
            answer = EmbedOutcome(
                embeddings=[vector], model="m", provider="p", provider_model="pm", inference_id=new_id()
            )
            filer.embed([f"text {i}"], answer, CallContext(api_key_id="k"))
            ids.append(answer.inference_id)
        del vector, answer
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert recorder.stats()["buffered"] == 200
    assert kept < 2_000_000, f"{kept:,} bytes kept for 200 buffered rows"
    await store.start()  # the database is back: the rows are written as filed
    await recorder.flush()
    got = await store.get_inference(ids[-1])
    assert got is not None
    assert got["output"] == {"count": 1, "dimensions": 3072}
    assert got["input"] == {"input": ["text 199"]} and got["kind"] == "embed" and got["api_key_id"] == "k"
    await store.aclose()


async def test_the_buffer_is_bounded_in_bytes_dropping_the_oldest(tmp_path: Path) -> None:
    """While the database is down, rows with long inputs reach the byte budget long before
    ``max_buffer`` rows: the oldest are dropped and counted (a ``sync`` caller of one gets
    :class:`RecordingError`), and the rest are written once the database is back."""
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    prompt = "x" * 50_000
    budget = 10 * (ENTRY_OVERHEAD + len(prompt))
    recorder = InferenceRecorder(
        store, flush_interval_s=60, batch_size=100, max_buffer=100_000, max_buffer_bytes=budget
    )
    filer = InferenceFiler(recorder)
    ids = []
    for i in range(15):
        answer = EmbedOutcome(embeddings=[[0.5]], model="m", provider="p", provider_model="pm", inference_id=new_id())
        filer.embed([prompt], answer, CallContext())
        ids.append(answer.inference_id)
        if i == 0:
            waiting = asyncio.ensure_future(recorder.persist(ids[0]))  # recording = "sync": waits for its row
            await asyncio.sleep(0)
    assert recorder.stats() == {"buffered": 10, "buffered_bytes": budget, "written": 0, "dropped": 5}
    with pytest.raises(RecordingError, match="dropped"):
        await waiting
    assert not any(recorder.is_pending(i) for i in ids[:5]) and all(recorder.is_pending(i) for i in ids[5:])
    await store.start()  # the database is back
    await recorder.flush()
    assert await store.count_inferences() == 10
    assert await store.get_inference(ids[4]) is None and await store.get_inference(ids[5]) is not None
    assert recorder.stats()["buffered_bytes"] == 0
    await store.aclose()


def test_a_chat_row_weighs_its_messages_parts_tool_calls_and_answer(tmp_path: Path) -> None:
    recorder = InferenceRecorder(
        Store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"), flush_interval_s=60, batch_size=100, max_buffer=10
    )
    image = "data:image/png;base64," + "A" * 30_000
    request = ChatRequest.model_validate(
        {
            "messages": [
                {"role": "system", "content": "s" * 1_000},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "t" * 2_000},
                        {"type": "image_url", "image_url": {"url": image}},
                    ],
                },
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "a" * 500}}],
                },
            ]
        }
    )
    answer = ChatOutcome(content="o" * 700, model="m", provider="p", provider_model="pm", inference_id=new_id())
    InferenceFiler(recorder).chat(request, answer, CallContext(), ttft_ms=None, status="ok", error=None)
    weight = recorder.stats()["buffered_bytes"] - ENTRY_OVERHEAD
    assert 1_000 + 2_000 + len(image) + 500 + 700 <= weight < 36_000
