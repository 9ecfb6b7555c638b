"""Attempts remember their compliance reservation, so a restart can resolve it.

A dialer killed mid-call used to leave the call's reservation pending for ever: the outcome
(a conversation, say) never reached the guard's ledger. With the reservation id on the row,
recovery books the outcome of an adopted call when it ends, and a conservative one for a call
it can no longer see.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("call_attempts") as batch:
        batch.add_column(sa.Column("reservation_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call_attempts") as batch:
        batch.drop_column("reservation_id")
