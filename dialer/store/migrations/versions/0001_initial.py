"""Initial schema: tenants, campaigns, debtors, debts, phones, addresses, agents, attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(18, 4)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.Column[int]:
    return sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant_fk(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("dial_mode", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_table(
        "debtors",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant_fk(),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("national_id", sa.String(64), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "external_id"),
    )
    op.create_table(
        "debts",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant_fk(),
        sa.Column("debtor_id", sa.Integer(), sa.ForeignKey("debtors.id"), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("principal", MONEY, nullable=False),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("days_past_due", sa.Integer(), nullable=False),
        sa.Column("risk_score", sa.Float(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "external_id"),
    )
    op.create_index(op.f("ix_debts_debtor_id"), "debts", ["debtor_id"])
    op.create_index(
        "ix_debts_tenant_id_status_balance_id",
        "debts",
        ["tenant_id", "status", sa.text("balance DESC"), "id"],
    )
    op.create_table(
        "phones",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant_fk(),
        sa.Column("debtor_id", sa.Integer(), sa.ForeignKey("debtors.id"), nullable=False),
        sa.Column("e164", sa.String(16), nullable=False),
        sa.Column("phone_type", sa.String(10), nullable=False),
        sa.Column("source", sa.String(40), nullable=True),
        sa.Column("consent", sa.Boolean(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("do_not_call", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("debtor_id", "e164"),
    )
    op.create_index(op.f("ix_phones_tenant_id_e164"), "phones", ["tenant_id", "e164"])
    op.create_table(
        "addresses",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant_fk(),
        sa.Column("debtor_id", sa.Integer(), sa.ForeignKey("debtors.id"), nullable=False),
        sa.Column("line1", sa.String(200), nullable=True),
        sa.Column("city", sa.String(100), nullable=True),
        sa.Column("region", sa.String(100), nullable=True),
        sa.Column("postal_code", sa.String(20), nullable=True),
        sa.Column("country", sa.String(2), nullable=True),
    )
    op.create_index(op.f("ix_addresses_debtor_id"), "addresses", ["debtor_id"])
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant_fk(),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(128), nullable=False),
        sa.UniqueConstraint("tenant_id", "external_id"),
    )
    op.create_table(
        "call_attempts",
        sa.Column("id", BIG_ID, primary_key=True),
        _tenant_fk(),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("debtor_id", sa.Integer(), sa.ForeignKey("debtors.id"), nullable=False),
        sa.Column("debt_id", sa.Integer(), sa.ForeignKey("debts.id"), nullable=True),
        sa.Column("phone_id", sa.Integer(), sa.ForeignKey("phones.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("abandoned", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Integer(), nullable=True),
        sa.Column("dialed_at", TS, nullable=False),
        sa.Column("answered_at", TS, nullable=True),
        sa.Column("connected_at", TS, nullable=True),
        sa.Column("hungup_at", TS, nullable=True),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.Column("server", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("uniqueid", sa.String(64), nullable=True),
        sa.Column("linkedid", sa.String(64), nullable=True),
        sa.Column("channel", sa.String(200), nullable=True),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("recording_path", sa.String(500), nullable=True),
        sa.Column("amd_status", sa.String(32), nullable=True),
    )
    op.create_index(
        op.f("ix_call_attempts_campaign_id_status"), "call_attempts", ["campaign_id", "status"]
    )
    op.create_index(
        op.f("ix_call_attempts_campaign_id_phone_id"), "call_attempts", ["campaign_id", "phone_id"]
    )
    op.create_index(op.f("ix_call_attempts_uniqueid"), "call_attempts", ["uniqueid"])
    op.create_index(op.f("ix_call_attempts_status_node_id"), "call_attempts", ["status", "node_id"])
    op.create_table(
        "dispositions",
        sa.Column("id", BIG_ID, primary_key=True),
        _tenant_fk(),
        sa.Column("attempt_id", BIG_ID, sa.ForeignKey("call_attempts.id"), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("promise_amount", MONEY, nullable=True),
        sa.Column("promise_date", sa.Date(), nullable=True),
        sa.Column("callback_at", TS, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index(op.f("ix_dispositions_attempt_id"), "dispositions", ["attempt_id"])


def downgrade() -> None:
    op.drop_table("dispositions")
    op.drop_table("call_attempts")
    op.drop_table("agents")
    op.drop_table("addresses")
    op.drop_table("phones")
    op.drop_table("debts")
    op.drop_table("debtors")
    op.drop_table("campaigns")
    op.drop_table("tenants")
