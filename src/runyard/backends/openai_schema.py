"""Tables of the OpenAI surface (migration ``0008_openai``)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

responses = sa.Table(
    "openai_responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("inference_id", sa.String(36), nullable=False, index=True),
    sa.Column("api_key_id", sa.String(64)),
    sa.Column("body", sa.JSON, nullable=False),  # the response object as last rendered
    sa.Column("input_items", sa.JSON, nullable=False),  # this request's input items, with ids
    sa.Column("conversation", sa.JSON, nullable=False),  # chat messages up to and with the answer
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

files = sa.Table(
    "openai_files",
    metadata,
    sa.Column("file_id", sa.String(36), primary_key=True),
    sa.Column("purpose", sa.String(64), nullable=False),
    sa.Column("api_key_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

batches = sa.Table(
    "openai_batches",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(36), nullable=False),
    sa.Column("api_key_id", sa.String(64)),
    sa.Column("body", sa.JSON, nullable=False),  # the batch object's own fields
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)
