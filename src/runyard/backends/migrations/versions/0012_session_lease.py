"""Sessions carry a lease their worker renews: a session whose worker died ends (``SESSION_EXPIRED``)
once the lease runs out, instead of holding its runs until the idle timeout (off 0011_task_trace).

Revision ID: 0012_session_lease
Revises: 0011_task_trace
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_session_lease"
down_revision = "0011_task_trace"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("lease_until", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("lease_until")
