"""Cases: one per debtor, with its history (status, collector), notes, payments and promises
to pay. Every debtor already stored gets its case, status new.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(18, 4)
TS = sa.DateTime(timezone=True)


def _tenant() -> sa.Column[int]:
    return sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False)


def _case() -> sa.Column[int]:
    return sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("debtor_id", sa.Integer(), sa.ForeignKey("debtors.id"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("opened_by", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("status_changed_at", TS, nullable=False),
        sa.UniqueConstraint("debtor_id", name="uq_cases_debtor_id"),
    )
    op.create_index("ix_cases_tenant_id_status", "cases", ["tenant_id", "status"])
    op.create_index("ix_cases_tenant_id_agent_id", "cases", ["tenant_id", "agent_id"])
    op.create_table(
        "case_history",
        sa.Column("id", BIG_ID, primary_key=True),
        _tenant(),
        _case(),
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("old_value", sa.String(64), nullable=True),
        sa.Column("new_value", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_case_history_case_id_at", "case_history", ["case_id", "at"])
    op.create_table(
        "case_notes",
        sa.Column("id", BIG_ID, primary_key=True),
        _tenant(),
        _case(),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_case_notes_case_id_created_at", "case_notes", ["case_id", "created_at"])
    op.create_table(
        "payments",
        sa.Column("id", BIG_ID, primary_key=True),
        _tenant(),
        _case(),
        sa.Column("debt_id", sa.Integer(), sa.ForeignKey("debts.id"), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=False),
        sa.Column("method", sa.String(32), nullable=True),
        sa.Column("reference", sa.String(100), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "external_id", name="uq_payments_tenant_id_external_id"),
    )
    op.create_index("ix_payments_case_id_paid_on", "payments", ["case_id", "paid_on"])
    op.create_table(
        "promises",
        sa.Column("id", BIG_ID, primary_key=True),
        _tenant(),
        _case(),
        sa.Column("debt_id", sa.Integer(), sa.ForeignKey("debts.id"), nullable=True),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("promised_on", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disposition_id", BIG_ID, sa.ForeignKey("dispositions.id"), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
    )
    op.create_index("ix_promises_case_id", "promises", ["case_id"])
    op.create_index("ix_promises_status_due_date", "promises", ["status", "due_date"])
    # A case's timeline lists every call to its debtor.
    op.create_index("ix_call_attempts_debtor_id", "call_attempts", ["debtor_id"])
    # The debtors already stored get their cases, dated when the debtor was.
    op.execute(
        "INSERT INTO cases (tenant_id, debtor_id, status, opened_by, created_at,"
        " status_changed_at) SELECT tenant_id, id, 'new', 'system:migration', created_at,"
        " created_at FROM debtors ORDER BY id"
    )


def downgrade() -> None:
    op.drop_index("ix_call_attempts_debtor_id", table_name="call_attempts")
    op.drop_table("promises")
    op.drop_table("payments")
    op.drop_table("case_notes")
    op.drop_table("case_history")
    op.drop_table("cases")
