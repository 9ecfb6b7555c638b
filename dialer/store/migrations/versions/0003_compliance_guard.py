"""Compliance guard ledgers: attempts counted per rule, reservations, flags, per-ledger locks.

Mirrors `compliance_guard.store_sql.metadata` at the time of writing (a migration is a frozen
snapshot: later changes to those tables get their own revision).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "compliance_ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("ledger_key", sa.String(512), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("member", sa.String(128), nullable=False),
    )
    op.create_index("ix_compliance_ledger_key_at", "compliance_ledger", ["ledger_key", "at_us"])
    op.create_index("ix_compliance_ledger_member", "compliance_ledger", ["member"])
    op.create_table(
        "compliance_reservation",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
    )
    op.create_table(
        "compliance_flag",
        sa.Column("target", sa.String(512), primary_key=True),
        sa.Column("flag", sa.String(64), primary_key=True),
        sa.Column("set_us", sa.BigInteger(), nullable=False),
    )
    op.create_table("compliance_lock", sa.Column("lock_key", sa.String(512), primary_key=True))


def downgrade() -> None:
    op.drop_table("compliance_lock")
    op.drop_table("compliance_flag")
    op.drop_table("compliance_reservation")
    op.drop_index("ix_compliance_ledger_member", table_name="compliance_ledger")
    op.drop_index("ix_compliance_ledger_key_at", table_name="compliance_ledger")
    op.drop_table("compliance_ledger")
