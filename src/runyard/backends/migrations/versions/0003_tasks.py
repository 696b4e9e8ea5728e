"""Apps & tasks: tasks, task_events, sessions (a branch of its own off 0001).

Revision ID: 0003
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = ("tasks",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
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
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("affinity", sa.String(64)),
        sa.Column("lease_until", sa.Float),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("api_key_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_tasks_claim", "tasks", ["pool", "status", "id"])
    op.create_index("ix_tasks_app", "tasks", ["app", "id"])
    op.create_index("ix_tasks_lease", "tasks", ["status", "lease_until"])
    op.create_table(
        "task_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(36), nullable=False, index=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("app", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("timeout_s", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sessions")
    op.drop_table("task_events")
    op.drop_index("ix_tasks_lease", "tasks")
    op.drop_index("ix_tasks_app", "tasks")
    op.drop_index("ix_tasks_claim", "tasks")
    op.drop_table("tasks")
