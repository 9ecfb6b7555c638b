"""Days past due carry the day they held on, so the nightly ageing can move them on.

Debts stored before this revision are taken as current on the day of the upgrade (their days
past due neither jump nor stand still from then on).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("debts") as batch:
        batch.add_column(sa.Column("dpd_as_of", sa.Date(), nullable=True))
    op.execute(sa.text("UPDATE debts SET dpd_as_of = CURRENT_DATE"))


def downgrade() -> None:
    with op.batch_alter_table("debts") as batch:
        batch.drop_column("dpd_as_of")
