"""Inferences keep the HTTP request's id and its trace id (a branch of its own off 0001).

Revision ID: 0009_request_trace_ids
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_request_trace_ids"
down_revision = "0001"
branch_labels = ("telemetry",)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inferences") as batch:
        batch.add_column(sa.Column("request_id", sa.String(128)))
        batch.add_column(sa.Column("trace_id", sa.String(32)))
        batch.create_index("ix_inferences_request_id", ["request_id"])


def downgrade() -> None:
    with op.batch_alter_table("inferences") as batch:
        batch.drop_index("ix_inferences_request_id")
        batch.drop_column("trace_id")
        batch.drop_column("request_id")
