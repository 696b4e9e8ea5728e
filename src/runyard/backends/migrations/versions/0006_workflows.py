"""Workflows: definitions (draft), immutable versions, aliases (a branch of its own off 0001).

Revision ID: 0006_workflows
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_workflows"
down_revision = "0001"
branch_labels = ("workflows",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("draft", sa.JSON, nullable=False),
        sa.Column("draft_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deployed_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "workflow_versions",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "workflow_aliases",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workflow_aliases")
    op.drop_table("workflow_versions")
    op.drop_table("workflows")
