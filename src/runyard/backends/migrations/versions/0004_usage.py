"""Usage accounting: cost and cache hits on inferences.

Revision ID: 0004
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = ("usage",)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inferences") as batch:
        batch.add_column(sa.Column("cost", sa.Float, nullable=True))
        batch.add_column(sa.Column("cache_hit", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_inferences_api_key_created", "inferences", ["api_key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_inferences_api_key_created", "inferences")
    with op.batch_alter_table("inferences") as batch:
        batch.drop_column("cache_hit")
        batch.drop_column("cost")
