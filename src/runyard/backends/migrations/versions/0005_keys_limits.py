"""API keys: workspace and per-key limits (requests/min sync and async, tokens/min, spend per period).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("workspace", sa.String(255), nullable=False, server_default="default"))
        batch.add_column(sa.Column("rpm_sync", sa.Integer, nullable=True))
        batch.add_column(sa.Column("rpm_async", sa.Integer, nullable=True))
        batch.add_column(sa.Column("tpm", sa.Integer, nullable=True))
        batch.add_column(sa.Column("spend_limit", sa.Float, nullable=True))
        batch.add_column(sa.Column("period", sa.String(8), nullable=True))
    op.create_index("ix_api_keys_workspace", "api_keys", ["workspace"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_workspace", "api_keys")
    with op.batch_alter_table("api_keys") as batch:
        for column in ("period", "spend_limit", "tpm", "rpm_async", "rpm_sync", "workspace"):
            batch.drop_column(column)
