"""The DAG engine: one :class:`Run` schedules a definition's blocks as their dependencies finish,
renders their templates, applies timeouts and retries, and records a span per block.

A run's ``workflow`` task events carry block start/finish, streamed chunks and, last, the
full result (``{success, output, error, logs, metadata, trace_spans, total_duration}``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from jinja2 import Undefined
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError

from ..apps import AppContext
from ..backends.store import utcnow
from ..errors import RunyardError
from ..services.ai import BoundAI
from ..telemetry import spans as otel
from .blocks import HANDLERS, BlockFailed, BlockServices, size
from .definition import env, gates, rewrite_template, whole_expression

__all__ = ["Run"]

STREAMING_KINDS = frozenset({"llm", "agent"})  # blocks that stream their own chunks


class Run:
    """One execution of a definition: blocks run as soon as their dependencies finish."""

    def __init__(
        self,
        services: BlockServices,
        definition: dict[str, Any],
        input: dict[str, Any],
        ctx: AppContext,
        emit: Callable[[dict[str, Any]], None],
        *,
        stream: bool,
        selected: list[str] | None,
    ) -> None:
        self.services = services
        self.ctx = ctx
        self.emit = emit
        self.stream = stream
        self.selected = selected
        self.selected_blocks = {s.partition(".")[0] for s in selected or []}
        self.blocks = {b["id"]: b for b in definition["blocks"]}
        self.deps: dict[str, set[str]] = {k: set(v) for k, v in definition.get("_deps", {}).items()}
        self.input = input
        self.outputs: dict[str, Any] = {}
        self.skipped: set[str] = set()
        self.chosen: dict[str, set[str]] = {}  # gate block -> the targets it chose
        self.gated: dict[str, str] = {t: b["id"] for b in definition["blocks"] for t in gates(b)}
        self.spans: list[dict[str, Any]] = []
        self.logs: list[str] = []
        self.final: Any = None

    # -- templates
    @property
    def api_key_id(self) -> str | None:
        """The key that submitted the run (its files and agent chats are filed under it)."""
        ai = self.ctx.ai
        return ai.ctx.api_key_id if isinstance(ai, BoundAI) else None

    def context(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        ctx: dict[str, Any] = {bid: self.outputs.get(bid) for bid in self.blocks}
        ctx["blocks"] = dict(ctx)
        ctx["input"] = self.input
        ctx.update(extra or {})
        return ctx

    def render(self, value: Any, ctx: dict[str, Any], block_id: str) -> Any:
        try:
            if isinstance(value, str):
                if "{{" not in value and "{%" not in value:
                    return value
                expr = whole_expression(value)
                if expr is not None:
                    value = env().compile_expression(expr, undefined_to_none=False)(**ctx)
                    if isinstance(value, Undefined):
                        if getattr(value, "_undefined_exception", None) is SecurityError:
                            raise SecurityError(f"access refused in {expr.strip()!r}")
                        return None
                    return value
                return env().from_string(rewrite_template(value)).render(**ctx)
            if isinstance(value, dict):
                return {k: self.render(v, ctx, block_id) for k, v in value.items()}
            if isinstance(value, list):
                return [self.render(v, ctx, block_id) for v in value]
            return value
        except SecurityError as err:
            raise BlockFailed(block_id, f"template refused by the sandbox: {err}", "template_refused") from None
        except (TemplateError, UndefinedError) as err:
            raise BlockFailed(block_id, f"template error: {err}", "template_error") from None

    def expr(self, text: str, ctx: dict[str, Any], block_id: str) -> Any:
        return self.render(text if "{{" in text else "{{ " + text + " }}", ctx, block_id)

    # -- scheduling
    async def execute(self) -> dict[str, Any]:
        started_wall, started = utcnow(), time.perf_counter()
        error: dict[str, Any] | None = None
        pending = set(self.blocks)
        running: dict[asyncio.Task[Any], str] = {}
        try:
            while pending or running:
                changed = True
                while changed:
                    changed = False
                    for bid in sorted(pending):
                        if self.deps.get(bid, set()) <= (set(self.outputs) | self.skipped):
                            pending.discard(bid)
                            if self._should_skip(bid):
                                self.skipped.add(bid)
                                self.emit({"event": "block:skipped", "blockId": bid})
                                changed = True
                                continue
                            running[asyncio.create_task(self._block(bid))] = bid
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.pop(task)
                    task.result()
        except RunyardError as err:
            error = {"code": err.code, "message": err.message, "block": getattr(err, "block_id", None)}
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        total = time.perf_counter() - started
        completed = utcnow()
        output = self.final if self.final is not None else {}
        if self.selected:
            output = {s: self._pick(s) for s in self.selected}
        return {
            "success": error is None,
            "output": output if error is None else None,
            "error": error,
            "logs": self.logs,
            "metadata": {
                "duration": round(total * 1000, 3),
                "startedAt": started_wall.isoformat(),
                "completedAt": completed.isoformat(),
            },
            "trace_spans": self.spans,
            "total_duration": round(total * 1000, 3),
        }

    def _pick(self, path: str) -> Any:
        bid, _, rest = path.partition(".")
        value = self.outputs.get(bid)
        for part in rest.split(".") if rest else []:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def _should_skip(self, bid: str) -> bool:
        if self.blocks[bid].get("kind") == "output":
            return False
        gate = self.gated.get(bid)
        if gate is not None and (gate in self.skipped or bid not in self.chosen.get(gate, set())):
            return True
        deps = self.deps.get(bid, set())
        return bool(deps) and deps <= self.skipped

    async def _block(self, bid: str) -> None:
        block = self.blocks[bid]
        kind = block["kind"]
        self.emit({"event": "block:start", "blockId": bid, "kind": kind})
        span: dict[str, Any] = {"blockId": bid, "name": block.get("name", bid), "kind": kind}
        output = await self.with_policy(block, span, lambda: self.dispatch(block, self.context(), span))
        self.outputs[bid] = output
        self.emit({"event": "block:finish", "blockId": bid, "status": span["status"], "duration": span["duration"]})
        if self.stream and bid in self.selected_blocks and kind not in STREAMING_KINDS:  # those streamed already
            for path in self.selected or []:
                if path.partition(".")[0] == bid:
                    value = self._pick(path)
                    chunk = value if isinstance(value, str) else orjson.dumps(value).decode()
                    self.emit({"blockId": bid, "chunk": chunk})

    async def with_policy(
        self, block: dict[str, Any], span: dict[str, Any], call: Callable[[], Any], spans: list[Any] | None = None
    ) -> Any:
        """Timeout and retries around one block execution; records its span."""
        with otel.workflow_block(span["blockId"], block["kind"]) as otel_span:
            try:
                output = await self._with_policy(block, span, call, spans if spans is not None else self.spans)
            except BlockFailed as err:
                otel_span.fail(err, err.code)
                raise
            finally:
                otel_span.set_many(
                    {"runyard.block.status": span.get("status"), "runyard.block.attempts": span.get("attempts")}
                )
            if span.get("status") == "error":  # on_error = "continue"
                otel_span.fail(BlockFailed(span["blockId"], str(span.get("error"))), "block_failed")
            return output

    async def _with_policy(
        self, block: dict[str, Any], span: dict[str, Any], call: Callable[[], Any], spans: list[Any]
    ) -> Any:
        bid = span["blockId"]
        retries = int(block.get("retries", 0))
        timeout = block.get("timeout")
        attempt = 0
        start_wall, start = utcnow(), time.perf_counter()
        while True:
            attempt += 1
            try:
                if timeout:
                    output = await asyncio.wait_for(call(), float(timeout))
                else:
                    output = await call()
                status, err_msg = "success", None
                break
            except TimeoutError:
                failure: RunyardError = BlockFailed(bid, f"timed out after {timeout}s", "block_timeout")
            except BlockFailed as err:
                failure = err
            except RunyardError as err:
                failure = BlockFailed(bid, err.message, err.code or "block_failed")
            except Exception as err:
                failure = BlockFailed(bid, f"{type(err).__name__}: {err}")
            if attempt <= retries:
                await asyncio.sleep(float(block.get("retry_backoff", 0.05)) * attempt)
                continue
            end = time.perf_counter()
            span.update(
                startTime=start_wall.isoformat(),
                endTime=utcnow().isoformat(),
                duration=round((end - start) * 1000, 3),
                status="error",
                error=failure.message,
                attempts=attempt,
            )
            spans.append(span)
            if block.get("on_error") == "continue":
                return {"error": failure.message}
            failure.block_id = bid  # type: ignore[attr-defined]
            raise failure
        end = time.perf_counter()
        span.update(
            startTime=start_wall.isoformat(),
            endTime=utcnow().isoformat(),
            duration=round((end - start) * 1000, 3),
            status=status,
            attempts=attempt,
            output_size=size(output),
        )
        if err_msg:
            span["error"] = err_msg
        spans.append(span)
        return output

    async def dispatch(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        """Run one block's kind (see :mod:`runyard.workflows.blocks`)."""
        kind = block["kind"]
        handler = HANDLERS.get(kind)
        if handler is None:
            raise BlockFailed(block["id"], f"{kind} blocks are not available yet", "kind_not_available")
        result = await handler(self, block, ctx, span)
        return result
