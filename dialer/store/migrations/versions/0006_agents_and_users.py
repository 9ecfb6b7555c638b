"""People at work: users of the pages, their browser sessions, agent shifts and state changes,
the audit trail, scheduled callbacks, and partial payments on dispositions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(18, 4)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("dispositions") as batch:
        batch.add_column(sa.Column("payment_amount", MONEY, nullable=True))
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("password_changed_at", TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "username", name="uq_users_tenant_id_username"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "agent_sessions",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=True),
        sa.Column("phone", sa.String(128), nullable=False),
        sa.Column("connect", sa.String(8), nullable=False),
        sa.Column("phone_call_id", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_since", TS, nullable=False),
        sa.Column("pause_reason", sa.String(32), nullable=True),
        sa.Column("attempt_id", BIG_ID, nullable=True),
        sa.Column("logged_in_at", TS, nullable=False),
        sa.Column("logged_out_at", TS, nullable=True),
    )
    op.create_index(
        "ix_agent_sessions_tenant_id_agent_id_logged_out_at",
        "agent_sessions",
        ["tenant_id", "agent_id", "logged_out_at"],
    )
    op.create_table(
        "agent_state_changes",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("session_id", BIG_ID, sa.ForeignKey("agent_sessions.id"), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("attempt_id", BIG_ID, nullable=True),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index(
        "ix_agent_state_changes_tenant_id_agent_id_at",
        "agent_state_changes",
        ["tenant_id", "agent_id", "at"],
    )
    op.create_table(
        "audit_events",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("old_value", sa.JSON(), nullable=True),
        sa.Column("new_value", sa.JSON(), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_audit_events_tenant_id_at", "audit_events", ["tenant_id", "at"])
    op.create_table(
        "callbacks",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("debtor_id", sa.Integer(), sa.ForeignKey("debtors.id"), nullable=False),
        sa.Column("debt_id", sa.Integer(), sa.ForeignKey("debts.id"), nullable=True),
        sa.Column("phone_id", sa.Integer(), sa.ForeignKey("phones.id"), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disposition_id", BIG_ID, sa.ForeignKey("dispositions.id"), nullable=True),
        sa.Column("attempt_id", BIG_ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index(
        "ix_callbacks_campaign_id_status_due_at", "callbacks", ["campaign_id", "status", "due_at"]
    )


def downgrade() -> None:
    for table in ("callbacks", "audit_events", "agent_state_changes", "agent_sessions"):
        op.drop_table(table)
    op.drop_table("web_sessions")
    op.drop_table("users")
    with op.batch_alter_table("dispositions") as batch:
        batch.drop_column("payment_amount")
