"""Cases' risk scores and strategy positions, and the log of what each day's strategy run did.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

# (name, type, nullable) of every column 0011 adds to cases, in the models' order.
_CASE_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any], bool]] = [
    ("risk_score", sa.Float(), True),
    ("risk_band", sa.String(8), True),
    ("risk_terms", sa.Text(), True),
    ("scored_at", TS, True),
    ("score_model", sa.String(100), True),
    ("strategy", sa.String(64), True),
    ("strategy_step", sa.Integer(), True),
    ("strategy_since", sa.Date(), True),
    ("strategy_last_run", sa.Date(), True),
    ("strategy_reasons", sa.Text(), True),
    ("override_by", sa.String(100), True),
    ("override_why", sa.Text(), True),
    ("override_at", TS, True),
    ("queued_campaign", sa.String(100), True),
    ("queued_step", sa.Integer(), True),
    ("queued_since", sa.Date(), True),
]


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        for name, kind, nullable in _CASE_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=nullable))
        batch.add_column(
            sa.Column("strategy_finished", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Segments select "cases a call step queued for campaign C" and "cases on strategy S".
    op.create_index("ix_cases_tenant_id_queued_campaign", "cases", ["tenant_id", "queued_campaign"])
    op.create_index(
        "ix_cases_tenant_id_strategy_strategy_step",
        "cases",
        ["tenant_id", "strategy", "strategy_step"],
    )
    op.create_table(
        "case_strategy_actions",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("run_date", sa.Date(), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("campaign", sa.String(100), nullable=True),
        sa.Column("template", sa.String(64), nullable=True),
        sa.Column("target", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("message_id", BIG_ID, nullable=True),
        sa.Column("batch_key", sa.String(100), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint(
            "case_id",
            "run_date",
            "strategy",
            "step",
            "kind",
            name="uq_case_strategy_actions_case_id_run_date_strategy_step_kind",
        ),
    )
    op.create_index(
        "ix_case_strategy_actions_tenant_id_run_date",
        "case_strategy_actions",
        ["tenant_id", "run_date"],
    )
    op.create_index("ix_case_strategy_actions_outcome", "case_strategy_actions", ["outcome"])


def downgrade() -> None:
    op.drop_table("case_strategy_actions")
    op.drop_index("ix_cases_tenant_id_strategy_strategy_step", table_name="cases")
    op.drop_index("ix_cases_tenant_id_queued_campaign", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("strategy_finished")
        for name, _kind, _nullable in reversed(_CASE_COLUMNS):
            batch.drop_column(name)
