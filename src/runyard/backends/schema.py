"""Table definitions (SQLAlchemy Core). Changes go through a migration in ``migrations/versions``."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

inferences = sa.Table(
    "inferences",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("episode_id", sa.String(36), index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("provider", sa.String(255)),
    sa.Column("provider_model", sa.String(255)),
    sa.Column("input", sa.JSON),
    sa.Column("output", sa.JSON),
    sa.Column("input_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("output_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cached_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("reasoning_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("latency_ms", sa.Float, nullable=False, default=0.0),
    sa.Column("ttft_ms", sa.Float),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.JSON),
    sa.Column("api_key_id", sa.String(64)),
    sa.Column("tags", sa.JSON),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("cost", sa.Float),  # USD, from the catalog's prices (0004)
    sa.Column("cache_hit", sa.Boolean, nullable=False, default=False),
    sa.Column("request_id", sa.String(128)),  # the HTTP request's X-Request-Id (0009; unindexed: 0013)
    sa.Column("trace_id", sa.String(32)),  # its OpenTelemetry trace, when tracing
    sa.Index("ix_inferences_api_key_created", "api_key_id", "created_at"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("target_type", sa.String(16), nullable=False),
    sa.Column("target_id", sa.String(36), nullable=False, index=True),
    sa.Column("metric_name", sa.String(255), nullable=False, index=True),
    sa.Column("value", sa.JSON),
    sa.Column("tags", sa.JSON),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("key_hash", sa.String(80), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    # workspace and limits (0005); a null limit falls back to the config's [limits]
    sa.Column("workspace", sa.String(255), nullable=False, server_default="default", index=True),
    sa.Column("rpm_sync", sa.Integer),
    sa.Column("rpm_async", sa.Integer),
    sa.Column("tpm", sa.Integer),
    sa.Column("spend_limit", sa.Float),
    sa.Column("period", sa.String(8)),
)

# -- apps & tasks (migration 0003) --------------------------------------------

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("app", sa.String(255), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("pool", sa.String(64), nullable=False),
    sa.Column("input", sa.JSON),
    sa.Column("setup", sa.JSON),
    sa.Column("output", sa.JSON),
    sa.Column("error", sa.JSON),
    sa.Column("progress", sa.Float),
    sa.Column("session_id", sa.String(36)),
    sa.Column("webhook", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("worker_id", sa.String(64)),
    sa.Column("affinity", sa.String(64)),
    sa.Column("lease_until", sa.Float),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("api_key_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("trace", sa.JSON),  # the submitter's W3C trace context (0011_task_trace)
    sa.Index("ix_tasks_claim", "pool", "status", "id"),
    sa.Index("ix_tasks_app", "app", "id"),
    sa.Index("ix_tasks_lease", "status", "lease_until"),
)

task_events = sa.Table(
    "task_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(36), nullable=False, index=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("data", sa.JSON),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("app", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("worker_id", sa.String(64)),
    sa.Column("timeout_s", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_until", sa.Float),  # the holding worker renews it (migration 0012_session_lease)
)

# -- files (migration 0002) ----------------------------------------------------

files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("api_key_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
