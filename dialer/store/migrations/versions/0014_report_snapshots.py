"""Reports: daily snapshots of cases (balance, days-past-due bucket, collector) for roll rates and recovery.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_snapshots",
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("debt_id", sa.Integer(), sa.ForeignKey("debts.id"), nullable=False),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=True),
        sa.Column("balance", sa.Numeric(18, 4), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("days_past_due", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(12), nullable=False),
        sa.Column("debt_status", sa.String(20), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("team_id", sa.Integer(), sa.ForeignKey("teams.id"), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("snapshot_date", "debt_id", name="pk_report_snapshots"),
    )
    op.create_index(
        "ix_report_snapshots_tenant_id_snapshot_date_bucket",
        "report_snapshots",
        ["tenant_id", "snapshot_date", "bucket"],
    )
    # The report reads a tenant's attempts, dispositions and payments of a period.
    op.create_index(
        "ix_call_attempts_tenant_id_dialed_at", "call_attempts", ["tenant_id", "dialed_at"]
    )
    op.create_index(
        "ix_dispositions_tenant_id_created_at", "dispositions", ["tenant_id", "created_at"]
    )
    op.create_index("ix_payments_tenant_id_paid_on", "payments", ["tenant_id", "paid_on"])


def downgrade() -> None:
    op.drop_index("ix_payments_tenant_id_paid_on", table_name="payments")
    op.drop_index("ix_dispositions_tenant_id_created_at", table_name="dispositions")
    op.drop_index("ix_call_attempts_tenant_id_dialed_at", table_name="call_attempts")
    op.drop_index("ix_report_snapshots_tenant_id_snapshot_date_bucket", table_name="report_snapshots")
    op.drop_table("report_snapshots")
