"""Workflows: the store (draft, immutable versions, aliases), the DAG engine, and the built-in
``runyard/workflow`` app through which every run goes (so runs are tasks: queued, polled, streamed).

A run's ``workflow`` task events carry block start/finish, streamed chunks and, last, the
full result (``{success, output, error, logs, metadata, trace_spans, total_duration}``).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import time
import types
import typing
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import sqlalchemy as sa
from jinja2 import Undefined
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from pydantic import BaseModel, Field

from ..apps import AppContext, app, definition_of
from ..backends.schema import tasks as task_rows
from ..backends.store import utcnow
from ..errors import ConflictError, NotFoundError, RunyardError, ValidationError
from ..files import File
from ..types import ChatRequest
from ..workflows import env, gates, parse_definition, rewrite_template, validate_definition, whole_expression
from .ai import BoundAI
from .preflight import workflow_problems
from .urlguard import check_url

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["WORKFLOW_APP", "WorkflowService"]

WORKFLOW_APP = "runyard/workflow"
STREAMING_KINDS = frozenset({"llm", "agent"})  # blocks that stream their own chunks
EVENT = "workflow"

_md = sa.MetaData()
workflows = sa.Table(
    "workflows",
    _md,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("draft", sa.JSON, nullable=False),
    sa.Column("draft_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deployed_at", sa.DateTime(timezone=True)),
)
versions = sa.Table(
    "workflow_versions",
    _md,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
aliases = sa.Table(
    "workflow_aliases",
    _md,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


class WorkflowRunInput(BaseModel):
    workflow: str
    version: int
    input: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False
    selected_outputs: list[str] | None = None


class BlockFailed(RunyardError):
    def __init__(self, block_id: str, message: str, code: str = "block_failed") -> None:
        super().__init__(f"block {block_id!r} failed: {message}", code=code, status=500)
        self.block_id = block_id


def _hash(definition: dict[str, Any]) -> str:
    clean = {k: v for k, v in definition.items() if not k.startswith("_")}
    return hashlib.sha256(orjson.dumps(clean, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def _size(value: Any) -> int:
    try:
        return len(orjson.dumps(value, default=str))
    except TypeError:
        return 0


def definition_error(problems: list[dict[str, str]]) -> ValidationError:
    summary = "; ".join(f"{p['block']}: {p['message']}" for p in problems[:5])
    return ValidationError(f"invalid workflow: {summary}", code="invalid_workflow", details=problems)


class WorkflowService:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.engine = gateway.store.engine

        @app(WORKFLOW_APP, version="1.0.0", description="Run a published workflow version.")
        async def run_workflow(input: WorkflowRunInput, ctx: AppContext) -> Any:
            return await self._run_as_task(input, ctx)

        self.app_definition = definition_of(run_workflow)

    # -- definitions ------------------------------------------------------------------
    @staticmethod
    def check(data: str | bytes | dict[str, Any]) -> dict[str, Any]:
        """The validated, normalized definition; 422 ``invalid_workflow`` listing each problem."""
        try:
            raw = parse_definition(data)
        except ValueError as err:
            raise definition_error([{"block": "(workflow)", "code": "invalid_syntax", "message": str(err)}]) from None
        definition, problems = validate_definition(raw)
        if problems:
            raise definition_error(problems)
        return definition

    async def save(self, data: str | bytes | dict[str, Any]) -> dict[str, Any]:
        definition = self.check(data)
        name, digest, now = definition["name"], _hash(definition), utcnow()
        async with self.engine.begin() as conn:
            exists = (await conn.execute(sa.select(workflows.c.name).where(workflows.c.name == name))).first()
            values = {"draft": definition, "draft_hash": digest, "updated_at": now}
            if exists:
                await conn.execute(workflows.update().where(workflows.c.name == name).values(**values))
            else:
                await conn.execute(workflows.insert().values(name=name, created_at=now, **values))
        return await self.status(name)

    async def _row(self, name: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(workflows).where(workflows.c.name == name))).first()
        if row is None:
            raise NotFoundError(f"workflow {name!r} not found", code="workflow_not_found")
        return dict(row._mapping)

    async def publish(self, name: str, *, alias: str | None = "main") -> dict[str, Any]:
        """Freeze the draft as the next version; ``alias`` (default ``main``) moves to it."""
        row = await self._row(name)
        if problems := await workflow_problems(row["draft"], self.gateway):
            raise definition_error(problems)  # names this gateway cannot resolve: refused before it runs
        now = utcnow()
        async with self.engine.begin() as conn:
            latest = (
                await conn.execute(sa.select(sa.func.max(versions.c.version)).where(versions.c.name == name))
            ).scalar()
            version = int(latest or 0) + 1
            await conn.execute(
                versions.insert().values(
                    name=name, version=version, definition=row["draft"], hash=row["draft_hash"], created_at=now
                )
            )
        if alias:
            await self.set_alias(name, alias, version)
        return {**(await self.status(name)), "published_version": version}

    async def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        await self._row(name)
        now = utcnow()
        async with self.engine.begin() as conn:
            found = (
                await conn.execute(
                    sa.select(versions.c.version).where(versions.c.name == name, versions.c.version == version)
                )
            ).first()
            if found is None:
                raise NotFoundError(f"workflow {name} has no version {version}", code="version_not_found")
            where = sa.and_(aliases.c.name == name, aliases.c.alias == alias)
            if (await conn.execute(sa.select(aliases.c.alias).where(where))).first():
                await conn.execute(aliases.update().where(where).values(version=version, updated_at=now))
            else:
                await conn.execute(aliases.insert().values(name=name, alias=alias, version=version, updated_at=now))
            if alias == "main":
                await conn.execute(workflows.update().where(workflows.c.name == name).values(deployed_at=now))
        return await self.status(name)

    async def status(self, name: str) -> dict[str, Any]:
        row = await self._row(name)
        async with self.engine.connect() as conn:
            vrows = (
                await conn.execute(
                    sa.select(versions.c.version, versions.c.hash, versions.c.created_at)
                    .where(versions.c.name == name)
                    .order_by(versions.c.version)
                )
            ).all()
            arows = (await conn.execute(sa.select(aliases).where(aliases.c.name == name))).all()
        alias_map = {a.alias: a.version for a in arows}
        hashes = {v.version: v.hash for v in vrows}
        deployed = alias_map.get("main")
        is_deployed = deployed is not None
        return {
            "id": name,
            "object": "workflow",
            "name": name,
            "draft": {k: v for k, v in row["draft"].items() if not k.startswith("_")},
            "versions": [{"version": v.version, "created_at": _iso(v.created_at)} for v in vrows],
            "aliases": alias_map,
            "deployed_version": deployed,
            "is_deployed": is_deployed,
            "isDeployed": is_deployed,
            "deployed_at": _iso(row["deployed_at"]) if is_deployed else None,
            "deployedAt": _iso(row["deployed_at"]) if is_deployed else None,
            "needs_redeployment": is_deployed and hashes.get(deployed) != row["draft_hash"],
            "needsRedeployment": is_deployed and hashes.get(deployed) != row["draft_hash"],
            "updated_at": _iso(row["updated_at"]),
        }

    async def validate_ref(self, ref: str) -> dict[str, Any]:
        """Can ``ref`` run as it stands? Its resolved version re-checked, and its deployment.
        Unknown workflows are 404; not deployed / unknown alias / bad definition → ``valid: false``."""
        name = ref.partition("@")[0]
        status = await self.status(name)  # 404 workflow_not_found
        out: dict[str, Any] = {"name": name, "version": None, "is_deployed": status["is_deployed"]}
        try:
            _, number, definition = await self.resolve(ref)
        except RunyardError as err:
            return {
                **out,
                "valid": False,
                "problems": [{"block": "(workflow)", "code": err.code, "message": err.message}],
            }
        stored = {k: v for k, v in definition.items() if not k.startswith("_")}
        _, problems = validate_definition(stored)
        problems += await workflow_problems(stored, self.gateway)
        return {**out, "version": number, "valid": not problems, "problems": problems}

    async def list_all(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            names = [r[0] for r in await conn.execute(sa.select(workflows.c.name).order_by(workflows.c.name))]
        out = []
        for name in names:
            st = await self.status(name)
            st.pop("draft")
            out.append(st)
        return out

    async def resolve(self, ref: str, version: int | str | None = None) -> tuple[str, int, dict[str, Any]]:
        """(name, version, definition) for ``ns/name@alias|vN|N`` (default ``@main``); 409
        ``workflow_not_deployed`` when nothing was published/deployed."""
        name, _, suffix = ref.partition("@")
        if version is not None:
            suffix = str(version)
        await self._row(name)
        suffix = suffix or "main"
        async with self.engine.connect() as conn:
            if suffix.lstrip("v").isdigit():
                number: int | None = int(suffix.lstrip("v"))
            else:
                number = (
                    await conn.execute(
                        sa.select(aliases.c.version).where(aliases.c.name == name, aliases.c.alias == suffix)
                    )
                ).scalar()
                if number is None:
                    if suffix == "main":
                        raise ConflictError(
                            f"workflow {name} is not deployed; publish it first", code="workflow_not_deployed"
                        )
                    raise NotFoundError(f"workflow {name} has no alias {suffix!r}", code="alias_not_found")
            row = (
                await conn.execute(
                    sa.select(versions.c.definition).where(versions.c.name == name, versions.c.version == number)
                )
            ).first()
        if row is None:
            raise NotFoundError(f"workflow {name} has no version {suffix}", code="version_not_found")
        assert number is not None
        return name, int(number), dict(row[0])

    async def submit(
        self,
        ref: str,
        input: dict[str, Any],
        *,
        version: int | str | None = None,
        stream: bool = False,
        selected_outputs: list[str] | None = None,
        webhook: str | None = None,
        api_key_id: str | None = None,
    ) -> dict[str, Any]:
        """Queue a run as a task of the ``runyard/workflow`` app; the task as created.

        Declared ``file`` inputs (and ``array`` of ``file``) are stored first and passed on as
        their ``runyard://files/<id>`` refs (see :meth:`FileService.ingest`).
        """
        name, number, definition = await self.resolve(ref, version)
        payload = {
            "workflow": name,
            "version": number,
            "input": await self._store_file_inputs(definition, input, api_key_id),
            "stream": stream,
            "selected_outputs": selected_outputs,
        }
        return await self.gateway.tasks.create(WORKFLOW_APP, payload, webhook=webhook, api_key_id=api_key_id)

    async def exists(self, ref: str) -> bool:
        async with self.engine.connect() as conn:
            query = sa.select(workflows.c.name).where(workflows.c.name == ref.partition("@")[0])
            return (await conn.execute(query)).first() is not None

    async def estimated_duration(self, name: str) -> float | None:
        """Mean duration (ms) of the workflow's last 20 completed runs, read from the task store
        (so every replica, and a restarted server, give the same estimate)."""
        t = task_rows.c
        query = (
            sa.select(t.started_at, t.finished_at)
            .where(t.app == WORKFLOW_APP, t.status == "completed", t.input["workflow"].as_string() == name)
            .order_by(t.id.desc())  # UUIDv7: newest first, along ix_tasks_app
            .limit(20)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        spans = [(end - start).total_seconds() * 1000 for start, end in rows if start is not None and end is not None]
        return round(sum(spans) / len(spans), 3) if spans else None

    async def _store_file_inputs(
        self, definition: dict[str, Any], input: dict[str, Any], api_key_id: str | None
    ) -> dict[str, Any]:
        """A copy of ``input`` with each declared file input (or its declared ``default``, when the
        caller gave none) replaced by its stored file's ref."""
        files = self.gateway.files
        declared = _file_inputs(definition)
        defaults = {n: d for n, (_, d) in declared.items() if d is not None and n not in input}
        if files is None or not (declared.keys() & input.keys() or defaults):
            return input
        allow_private = self.gateway.config.webhooks.allow_private_webhooks

        async def store(value: Any) -> str:
            return (await files.ingest(value, api_key_id=api_key_id, allow_private=allow_private)).uri

        out = {**defaults, **input}
        for name, (is_array, _) in declared.items():
            value = out.get(name)
            if value is None:
                continue
            if not is_array:
                out[name] = await store(value)
            elif isinstance(value, list):
                out[name] = [await store(item) for item in value]
        return out

    # -- execution ---------------------------------------------------------------------
    async def _run_as_task(self, input: WorkflowRunInput, ctx: AppContext) -> dict[str, Any]:
        _, _, definition = await self.resolve(input.workflow, input.version)

        def emit(data: dict[str, Any]) -> None:
            ctx._emit(EVENT, data)

        run = Run(self, definition, input.input, ctx, emit, stream=input.stream, selected=input.selected_outputs)
        result = await run.execute()
        emit({"event": "result", "result": result})
        if not result["success"]:
            err = result["error"]
            raise RunyardError(err["message"], code=err["code"], status=500)
        return result["output"]  # the task's output; the full result is its last workflow event


class Run:
    """One execution of a definition: blocks run as soon as their dependencies finish."""

    def __init__(
        self,
        service: WorkflowService,
        definition: dict[str, Any],
        input: dict[str, Any],
        ctx: AppContext,
        emit: Callable[[dict[str, Any]], None],
        *,
        stream: bool,
        selected: list[str] | None,
    ) -> None:
        self.service = service
        self.gateway = service.gateway
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
        output = await self._with_policy(block, span, lambda: self._dispatch(block, self.context(), span))
        self.outputs[bid] = output
        self.emit({"event": "block:finish", "blockId": bid, "status": span["status"], "duration": span["duration"]})
        if self.stream and bid in self.selected_blocks and kind not in STREAMING_KINDS:  # those streamed already
            for path in self.selected or []:
                if path.partition(".")[0] == bid:
                    value = self._pick(path)
                    chunk = value if isinstance(value, str) else orjson.dumps(value).decode()
                    self.emit({"blockId": bid, "chunk": chunk})

    async def _with_policy(
        self, block: dict[str, Any], span: dict[str, Any], call: Callable[[], Any], spans: list[Any] | None = None
    ) -> Any:
        """Timeout and retries around one block execution; records its span."""
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
            (spans if spans is not None else self.spans).append(span)
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
            output_size=_size(output),
        )
        if err_msg:
            span["error"] = err_msg
        (spans if spans is not None else self.spans).append(span)
        return output

    async def _dispatch(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        kind = block["kind"]
        handler = getattr(self, f"_{kind}", None)
        if handler is None:
            raise BlockFailed(block["id"], f"{kind} blocks are not available yet", "kind_not_available")
        result = await handler(block, ctx, span)
        return result

    # -- kinds
    async def _input(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        declared = block.get("inputs") or {}
        out = dict(self.input)
        for name, tp in declared.items():
            spec = tp if isinstance(tp, dict) else {"type": tp}
            if name not in out:
                if "default" in spec:
                    out[name] = spec["default"]
                elif spec.get("required", True):
                    raise BlockFailed(block["id"], f"missing input {name!r}", "invalid_input")
            elif not _type_ok(out[name], spec.get("type", "any")):
                raise BlockFailed(block["id"], f"input {name!r} must be {spec.get('type')}", "invalid_input")
        span["input_size"] = _size(out)
        return out

    async def _output(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        outputs = self.render(block.get("outputs") or {}, ctx, block["id"])
        self.final = outputs
        return outputs

    async def _function(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        target = block["function"]
        module_name, _, attr = target.partition(":")
        allowed = self.gateway.config.apps.modules
        if module_name not in allowed:
            raise BlockFailed(block["id"], f"module {module_name!r} is not in [apps] modules", "function_not_allowed")
        fn = getattr(importlib.import_module(module_name), attr, None)
        if not callable(fn):
            raise BlockFailed(block["id"], f"{target} is not a callable", "function_not_found")
        args = self.render(block.get("args") or {}, ctx, block["id"])
        span["input_size"] = _size(args)
        if self.gateway.files is not None:  # parameters typed runyard.File get readable files
            args = await self.gateway.files.localize(_file_args(fn, args))
        if inspect.iscoroutinefunction(fn):
            value = await fn(**args)
        else:
            value = await asyncio.to_thread(lambda: fn(**args))
        if self.gateway.files is not None:  # File outputs are stored and become runyard://files/<id> refs
            value = _refs(await self.gateway.files.store_outputs(value, api_key_id=self.api_key_id))
        return value if isinstance(value, dict) else {"result": value}

    async def _llm(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        bid = block["id"]
        messages = self.render(block.get("messages") or [], ctx, bid)
        if block.get("system"):
            messages.insert(0, {"role": "system", "content": self.render(block["system"], ctx, bid)})
        if block.get("prompt"):
            messages.append({"role": "user", "content": str(self.render(block["prompt"], ctx, bid))})
        body = {
            "model": block["model"],
            "messages": messages,
            "response_format": block.get("response_format"),
            "temperature": block.get("temperature"),
            "max_tokens": block.get("max_tokens"),
        }
        request = ChatRequest.model_validate({k: v for k, v in body.items() if v is not None})
        span["input_size"] = _size(messages)
        ai = self.ctx.ai or self.gateway.ai
        wants_stream = self.stream and (not self.selected_blocks or bid in self.selected_blocks)
        if wants_stream:
            chat = await ai.open_stream(request)
            async for delta in chat:
                if delta.content:
                    self.emit({"blockId": bid, "chunk": delta.content})
            result = chat.result
        else:
            result = await ai.chat(request)
        usage = result.usage
        tokens = {"prompt": usage.input_tokens, "completion": usage.output_tokens, "total": usage.total_tokens}
        span["tokens"] = tokens
        span["model"] = result.model
        out: dict[str, Any] = {"content": result.content, "model": result.model, "tokens": tokens}
        if block.get("response_format") and result.content:
            try:
                out["json"] = orjson.loads(result.content)
            except orjson.JSONDecodeError:
                out["json"] = None
        return out

    async def _agent(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        """Run an agent (a template ref, or an inline config) on one message, to its final answer.

        The agent's tools run server-side; a chat that stops for a client tool result or an
        approval fails the block (``agent_awaiting``: nobody in a workflow run can answer)."""
        bid = block["id"]
        agents = self.gateway.agents
        spec = self.render(block["agent"], ctx, bid)
        message = str(self.render(block["message"], ctx, bid))
        span["input_size"] = _size(message)
        chat = await agents.create_chat(spec if isinstance(spec, dict) else str(spec), api_key_id=self.api_key_id)
        span["children"] = [{"name": chat.get("agent") or "inline agent", "kind": "agent", "chat_id": chat["id"]}]
        wants_stream = self.stream and (not self.selected_blocks or bid in self.selected_blocks)

        async def emit(event: dict[str, Any]) -> None:
            if wants_stream and event.get("type") == "delta" and event.get("content"):
                self.emit({"blockId": bid, "chunk": event["content"]})

        done = await agents.send_message(chat["id"], message, emit=emit, api_key_id=self.api_key_id)
        status = done["status"]
        span["children"][0]["status"] = status
        if status != "idle":
            raise BlockFailed(bid, f"agent chat {chat['id']} stopped: {status}", "agent_" + status)
        answer = next((m for m in reversed(done["messages"]) if m["role"] == "assistant"), None)
        content = answer.get("content") if answer else None
        return {"content": content, "chat_id": chat["id"], "steps": len(done.get("steps") or [])}

    async def _condition(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        value = bool(self.expr(block["if"], ctx, block["id"]))
        chosen = [str(x) for x in (block.get("then") if value else block.get("else")) or []]
        if isinstance(block.get("then" if value else "else"), str):
            chosen = [str(block.get("then" if value else "else"))]
        self.chosen[block["id"]] = set(chosen)
        return {"result": value, "selected": chosen}

    async def _router(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        chosen: list[str] = []
        for i, route in enumerate(block.get("routes") or []):
            if self.expr(route["when"], ctx, block["id"]):
                to = route.get("to")
                chosen = [str(to)] if isinstance(to, str | int) else [str(t) for t in to or []]
                self.chosen[block["id"]] = set(chosen)
                return {"route": i, "selected": chosen}
        default = block.get("default")
        chosen = [str(default)] if isinstance(default, str | int) else [str(t) for t in default or []]
        self.chosen[block["id"]] = set(chosen)
        return {"route": None, "selected": chosen}

    async def _map(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        bid = block["id"]
        items = self.expr(block["over"], ctx, bid)
        if not isinstance(items, list | tuple):
            raise BlockFailed(bid, f"'over' must give a list, got {type(items).__name__}", "type_mismatch")
        inner = {**block["block"], "id": block["block"].get("id", f"{bid}.item")}
        semaphore = asyncio.Semaphore(int(block.get("concurrency", 4)))
        children: list[dict[str, Any]] = []

        async def one(index: int, item: Any) -> Any:
            async with semaphore:
                child_ctx = {**ctx, "item": item, "index": index}
                child = {"blockId": f"{bid}[{index}]", "name": f"{bid}[{index}]", "kind": inner["kind"]}
                return await self._with_policy(
                    inner, child, lambda: self._dispatch(inner, child_ctx, child), spans=children
                )

        results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        children.sort(key=lambda s: int(s["blockId"].rpartition("[")[2].rstrip("]")))
        span["children"] = children
        span["input_size"] = _size(items)
        return {"results": list(results), "count": len(results)}

    async def _app(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        tasks = self.gateway.tasks
        payload = self.render(block.get("input") or {}, ctx, block["id"])
        span["input_size"] = _size(payload)
        task = await tasks.create(str(self.render(block["app"], ctx, block["id"])), payload)
        span["children"] = [{"name": task["app"], "kind": "task", "task_id": task["id"]}]
        timeout = float(block.get("timeout") or 300)
        done = await tasks.wait(task["id"], timeout)
        span["children"][0]["status"] = done["status"]
        if done["status"] != "completed":
            message = (done.get("error") or {}).get("message") or done["status"]
            raise BlockFailed(block["id"], f"app {task['app']} {done['status']}: {message}", "app_failed")
        output = done["output"]
        return output if isinstance(output, dict) else {"result": output}

    async def _http(self, block: dict[str, Any], ctx: dict[str, Any], span: dict[str, Any]) -> Any:
        bid = block["id"]
        url = str(self.render(block["url"], ctx, bid))
        await check_url(url, allow_private=self.gateway.config.webhooks.allow_private_webhooks, field="url")
        method = str(block.get("method", "GET")).upper()
        headers = {str(k): str(v) for k, v in self.render(block.get("headers") or {}, ctx, bid).items()}
        body = self.render(block.get("body"), ctx, bid) if "body" in block else None
        span["input_size"] = _size(body)
        async with httpx.AsyncClient(timeout=float(block.get("timeout") or 30), follow_redirects=False) as client:
            response = await client.request(method, url, headers=headers, json=body)
        try:
            data: Any = response.json()
        except ValueError:
            data = response.text
        if response.status_code >= 400 and not block.get("allow_errors"):
            raise BlockFailed(bid, f"{method} {url} answered {response.status_code}", "http_error")
        return {"status": response.status_code, "headers": dict(response.headers), "body": data}


def _refs(value: Any) -> Any:
    if isinstance(value, File):
        return value.uri
    if isinstance(value, dict):
        return {k: _refs(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_refs(v) for v in value]
    return value


def _file_args(fn: Callable[..., Any], args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with the refs passed to parameters annotated ``File`` (``File | None``,
    ``list[File]``) turned into :class:`File` objects (still to be localized)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: pass the values as they are
        return args
    out = dict(args)
    for name, value in args.items():
        shape = _file_shape(hints.get(name))
        if shape == "one" and isinstance(value, str):
            out[name] = File(value)
        elif shape == "many" and isinstance(value, list):
            out[name] = [File(v) if isinstance(v, str) else v for v in value]
    return out


def _file_shape(hint: Any) -> str | None:
    """``"one"`` for ``File``, ``"many"`` for ``list[File]`` (either ``| None``), else ``None``."""
    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if hint is File:
        return "one"
    if origin is list and params and params[0] is File:
        return "many"
    if origin in (typing.Union, types.UnionType):
        shapes = {_file_shape(p) for p in params if p is not type(None)}
        return shapes.pop() if len(shapes) == 1 else None
    return None


def _spec_type(spec: Any) -> Any:
    return spec.get("type") if isinstance(spec, dict) else spec


def _file_inputs(definition: dict[str, Any]) -> dict[str, tuple[bool, Any]]:
    """Input name → (is an array, declared default or None), for every ``file`` / array-of-``file``
    input declared."""
    out: dict[str, tuple[bool, Any]] = {}
    for block in definition.get("blocks") or []:
        if block.get("kind") != "input":
            continue
        for name, spec in (block.get("inputs") or {}).items():
            tp = _spec_type(spec)
            default = spec.get("default") if isinstance(spec, dict) else None
            if tp == "file":
                out[name] = (False, default)
            elif tp == "array" and isinstance(spec, dict) and _spec_type(spec.get("items")) == "file":
                out[name] = (True, default)
    return out


def _type_ok(value: Any, tp: str) -> bool:
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "file": lambda v: isinstance(v, str | dict | File),  # submit stores them: runyard://files/<id>
    }
    check = checks.get(tp)
    return check is None or check(value)
