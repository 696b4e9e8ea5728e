"""Inferences lose the index on ``request_id`` (off 0009_request_trace_ids): nothing reads rows by
request id, and a random key's B-tree insert per recorded inference cost the writer thread a
third more CPU under load (bench/README.md, "Hot path").

Revision ID: 0013_no_request_id_index
Revises: 0009_request_trace_ids
"""

from alembic import op

revision = "0013_no_request_id_index"
down_revision = "0009_request_trace_ids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inferences") as batch:
        batch.drop_index("ix_inferences_request_id")


def downgrade() -> None:
    with op.batch_alter_table("inferences") as batch:
        batch.create_index("ix_inferences_request_id", ["request_id"])
