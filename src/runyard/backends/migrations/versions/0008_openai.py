"""OpenAI surface: stored Responses, the purpose of files uploaded the OpenAI way, and OpenAI
batches (each one a ``runyard/chat-batch`` task). A branch of its own off 0001.

Revision ID: 0008_openai
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_openai"
down_revision = "0001"
branch_labels = ("openai",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "openai_responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("inference_id", sa.String(36), nullable=False, index=True),
        sa.Column("api_key_id", sa.String(64)),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("input_items", sa.JSON, nullable=False),
        sa.Column("conversation", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "openai_files",
        sa.Column("file_id", sa.String(36), primary_key=True),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "openai_batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("api_key_id", sa.String(64)),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("openai_batches")
    op.drop_table("openai_files")
    op.drop_table("openai_responses")
