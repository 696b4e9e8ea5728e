"""Tasks keep the submitter's W3C trace context, so a worker continues its trace (a branch of its own off 0003).

Revision ID: 0011_task_trace
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_task_trace"
down_revision = "0003"
branch_labels = ("task_trace",)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("trace", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("trace")
