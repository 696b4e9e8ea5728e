"""Definition owners: the workspace that owns a workflow's / agent template's namespace, and the key
that created it (joins the workflows, agents and audit-log branches: it reads the audit log).

Existing rows get the workspace recorded in the audit log for their namespace (the earliest
entry that names one); rows whose creator is unknown stay NULL: the operator's, global (every
workspace reads and runs them; only admin keys change them).

Revision ID: 0011_definition_owners
Revises: 0006_workflows, 0007_agents, 0010_audit_log
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_definition_owners"
down_revision = ("0006_workflows", "0007_agents", "0010_audit_log")
branch_labels = None
depends_on = None

_TABLES = {
    "workflows": ("workflow.published", "workflow.alias_moved"),
    "agent_templates": ("agent.published",),
}


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("workspace", sa.String(255)))
            batch.add_column(sa.Column("created_by", sa.String(64)))
    conn = op.get_bind()
    audit = sa.table(
        "audit_log",
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("actor", sa.String),
        sa.column("action", sa.String),
        sa.column("target", sa.String),
        sa.column("workspace", sa.String),
    )
    for table, actions in _TABLES.items():
        rows = sa.table(table, sa.column("name", sa.String), sa.column("workspace"), sa.column("created_by"))
        entries = conn.execute(
            sa.select(audit.c.target, audit.c.workspace, audit.c.actor)
            .where(audit.c.action.in_(actions), audit.c.workspace.is_not(None), audit.c.target.is_not(None))
            .order_by(audit.c.at.desc())
        ).all()
        first: dict[str, tuple[str, str]] = {}
        for target, workspace, actor in entries:  # newest first: the earliest wins
            first[target.partition("@")[0].partition("/")[0]] = (workspace, actor)
        for namespace, (workspace, actor) in first.items():
            key_id = actor.removeprefix("key:") if actor.startswith("key:") else None
            in_namespace = sa.or_(rows.c.name == namespace, rows.c.name.startswith(namespace + "/", autoescape=True))
            conn.execute(
                rows.update()
                .where(in_namespace, rows.c.workspace.is_(None))
                .values(workspace=workspace, created_by=key_id)
            )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("created_by")
            batch.drop_column("workspace")
