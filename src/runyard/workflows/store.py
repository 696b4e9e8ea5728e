"""The workflow store: drafts, immutable numbered versions, and aliases (``main`` is the deployment)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..backends.name_locks import lock_name
from ..backends.schema import tasks as task_rows
from ..backends.store import utcnow
from ..errors import ConflictError, NotFoundError, RunyardError, ValidationError
from ..services.namespaces import Namespaces, namespace_of
from .definition import parse_definition, validate_definition

__all__ = ["WORKFLOW_APP", "WorkflowRecord", "WorkflowStore", "WorkflowVersion", "definition_error"]

WORKFLOW_APP = "runyard/workflow"  # the built-in app every run is a task of

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
    sa.Column("workspace", sa.String(255)),  # the namespace's owner; None: the operator's
    sa.Column("created_by", sa.String(64)),  # the key that first saved it
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


def _hash(definition: dict[str, Any]) -> str:
    clean = {k: v for k, v in definition.items() if not k.startswith("_")}
    return hashlib.sha256(orjson.dumps(clean, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def definition_error(problems: list[dict[str, str]]) -> ValidationError:
    summary = "; ".join(f"{p['block']}: {p['message']}" for p in problems[:5])
    return ValidationError(f"invalid workflow: {summary}", code="invalid_workflow", details=problems)


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    """A saved workflow: its draft (editable) and when it was last deployed (``main`` moved)."""

    name: str
    draft: dict[str, Any]
    draft_hash: str
    created_at: datetime
    updated_at: datetime
    deployed_at: datetime | None = None
    workspace: str | None = None  # the namespace's owner (None: the operator's)
    created_by: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowVersion:
    """One published, immutable version of a workflow (the definition a run executes)."""

    name: str
    version: int
    definition: dict[str, Any]


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(f"workflow {name!r} not found", code="workflow_not_found")


class WorkflowStore:
    """``viewer`` (on every method): the caller's workspace, None for one who sees everything;
    another workspace's namespace answers as an unknown name (see :mod:`runyard.services.namespaces`)."""

    def __init__(self, engine: AsyncEngine, namespaces: Namespaces | None = None) -> None:
        self.engine = engine
        self.namespaces = namespaces or Namespaces()

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

    async def save(
        self, data: str | bytes | dict[str, Any], *, viewer: str | None = None, created_by: str | None = None
    ) -> dict[str, Any]:
        """Save the draft; a new namespace becomes ``viewer``'s, 403 ``namespace_taken`` when it is another's."""
        definition = self.check(data)
        name, digest, now = definition["name"], _hash(definition), utcnow()
        namespace = namespace_of(name)
        c = workflows.c
        in_namespace = sa.or_(c.name == namespace, c.name.startswith(namespace + "/", autoescape=True))
        async with self.engine.begin() as conn:
            await lock_name(conn, "namespace:" + namespace)  # another gateway's first save of it waits
            first = (await conn.execute(sa.select(c.workspace).where(in_namespace).limit(1))).first()
            owner = first[0] if first else viewer
            self.namespaces.check_claim(viewer, namespace, owner, exists=first is not None)
            exists = (await conn.execute(sa.select(c.name).where(c.name == name))).first()
            values = {"draft": definition, "draft_hash": digest, "updated_at": now}
            if exists:
                await conn.execute(workflows.update().where(c.name == name).values(**values))
            else:
                await conn.execute(
                    workflows.insert().values(
                        name=name, created_at=now, workspace=owner, created_by=created_by, **values
                    )
                )
        return await self.status(name)

    async def get(self, name: str, *, viewer: str | None = None, write: bool = False) -> WorkflowRecord:
        """The saved workflow; 404 ``workflow_not_found`` (also for another workspace's)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(workflows).where(workflows.c.name == name))).first()
        if row is None:
            raise _not_found(name)
        record = WorkflowRecord(**{str(k): v for k, v in row._mapping.items()})
        check = self.namespaces.check_write if write else self.namespaces.check_read
        check(viewer, namespace_of(name), record.workspace, _not_found(name))
        return record

    async def publish(self, name: str, *, alias: str | None = "main", viewer: str | None = None) -> dict[str, Any]:
        """Freeze the draft as the next version; ``alias`` (default ``main``) moves to it. Under the
        workflow's row lock: publishes from several gateways at once each get their own version,
        and the alias ends on the last."""
        await self.get(name, viewer=viewer, write=True)
        now = utcnow()
        async with self.engine.begin() as conn:
            row = await _locked(conn, name)
            latest = (
                await conn.execute(sa.select(sa.func.max(versions.c.version)).where(versions.c.name == name))
            ).scalar()
            version = int(latest or 0) + 1
            await conn.execute(
                versions.insert().values(
                    name=name, version=version, definition=row.draft, hash=row.draft_hash, created_at=now
                )
            )
            if alias:
                await _point(conn, name, alias, version, now)
        return {**(await self.status(name)), "published_version": version}

    async def set_alias(self, name: str, alias: str, version: int, *, viewer: str | None = None) -> dict[str, Any]:
        await self.get(name, viewer=viewer, write=True)
        now = utcnow()
        async with self.engine.begin() as conn:
            await _locked(conn, name)
            found = (
                await conn.execute(
                    sa.select(versions.c.version).where(versions.c.name == name, versions.c.version == version)
                )
            ).first()
            if found is None:
                raise NotFoundError(f"workflow {name} has no version {version}", code="version_not_found")
            await _point(conn, name, alias, version, now)
        return await self.status(name)

    async def status(self, name: str, *, viewer: str | None = None) -> dict[str, Any]:
        row = await self.get(name, viewer=viewer)
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
            "draft": {k: v for k, v in row.draft.items() if not k.startswith("_")},
            "versions": [{"version": v.version, "created_at": _iso(v.created_at)} for v in vrows],
            "aliases": alias_map,
            "deployed_version": deployed,
            "is_deployed": is_deployed,
            "isDeployed": is_deployed,
            "deployed_at": _iso(row.deployed_at) if is_deployed else None,
            "deployedAt": _iso(row.deployed_at) if is_deployed else None,
            "needs_redeployment": is_deployed and hashes.get(deployed) != row.draft_hash,
            "needsRedeployment": is_deployed and hashes.get(deployed) != row.draft_hash,
            "updated_at": _iso(row.updated_at),
        }

    async def validate_ref(self, ref: str, *, viewer: str | None = None) -> dict[str, Any]:
        """Can ``ref`` run as it stands? Its resolved version re-checked, and its deployment.
        Unknown workflows are 404; not deployed / unknown alias / bad definition → ``valid: false``."""
        name = ref.partition("@")[0]
        status = await self.status(name, viewer=viewer)  # 404 workflow_not_found
        out: dict[str, Any] = {"name": name, "version": None, "is_deployed": status["is_deployed"]}
        try:
            found = await self.resolve(ref)
        except RunyardError as err:
            return {
                **out,
                "valid": False,
                "problems": [{"block": "(workflow)", "code": err.code, "message": err.message}],
            }
        _, problems = validate_definition({k: v for k, v in found.definition.items() if not k.startswith("_")})
        return {**out, "version": found.version, "valid": not problems, "problems": problems}

    async def list_all(self, *, viewer: str | None = None) -> list[dict[str, Any]]:
        """Every workflow ``viewer`` may read."""
        query = sa.select(workflows.c.name, workflows.c.workspace).order_by(workflows.c.name)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        out = []
        for name, owner in rows:
            if not self.namespaces.readable(viewer, namespace_of(name), owner):
                continue
            st = await self.status(name)
            st.pop("draft")
            out.append(st)
        return out

    async def resolve(
        self, ref: str, version: int | str | None = None, *, viewer: str | None = None
    ) -> WorkflowVersion:
        """The version named by ``ns/name@alias|vN|N`` (default ``@main``); 409
        ``workflow_not_deployed`` when nothing was published/deployed."""
        name, _, suffix = ref.partition("@")
        if version is not None:
            suffix = str(version)
        await self.get(name, viewer=viewer)
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
        return WorkflowVersion(name, int(number), dict(row[0]))

    async def exists(self, ref: str, *, viewer: str | None = None) -> bool:
        """Whether ``ref`` names a workflow ``viewer`` may read."""
        name = ref.partition("@")[0]
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(workflows.c.workspace).where(workflows.c.name == name))).first()
        return row is not None and self.namespaces.readable(viewer, namespace_of(name), row[0])

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


async def _locked(conn: AsyncConnection, name: str) -> sa.Row[Any]:
    """The workflow's row, locked until the transaction ends (Postgres; SQLite has one writer)."""
    row = (await conn.execute(sa.select(workflows).where(workflows.c.name == name).with_for_update())).first()
    if row is None:
        raise _not_found(name)
    return row


async def _point(conn: AsyncConnection, name: str, alias: str, version: int, now: datetime) -> None:
    """Move (or make) ``alias`` to ``version``; ``main`` also marks the workflow deployed."""
    where = sa.and_(aliases.c.name == name, aliases.c.alias == alias)
    if (await conn.execute(sa.select(aliases.c.alias).where(where))).first():
        await conn.execute(aliases.update().where(where).values(version=version, updated_at=now))
    else:
        await conn.execute(aliases.insert().values(name=name, alias=alias, version=version, updated_at=now))
    if alias == "main":
        await conn.execute(workflows.update().where(workflows.c.name == name).values(deployed_at=now))
