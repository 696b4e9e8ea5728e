"""Agents: versioned templates, persisted chats, per agent+user memory (a branch of its own off 0001).

Revision ID: 0007_agents
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_agents"
down_revision = "0001"
branch_labels = ("agents",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_templates",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "agent_chats",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agent", sa.String(255)),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "agent_memory",
        sa.Column("agent", sa.String(255), primary_key=True),
        sa.Column("user", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.JSON),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agent_memory")
    op.drop_table("agent_chats")
    op.drop_table("agent_templates")
