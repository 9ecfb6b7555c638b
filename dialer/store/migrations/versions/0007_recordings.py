"""Recordings kept as evidence and the durable queue of work on them (archive, analyse,
transcribe).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("attempt_id", BIG_ID, sa.ForeignKey("call_attempts.id"), nullable=False),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("source_path", sa.String(500), nullable=False),
        sa.Column("archive_path", sa.String(500), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("sample_rate", sa.Integer(), nullable=True),
        sa.Column("channels", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("archived_at", TS, nullable=True),
        sa.Column("retain_until", TS, nullable=True),
        sa.Column("deleted_at", TS, nullable=True),
        sa.UniqueConstraint("attempt_id", name="uq_recordings_attempt_id"),
    )
    op.create_index(
        "ix_recordings_status_retain_until", "recordings", ["status", "retain_until"]
    )
    op.create_index(
        "ix_recordings_tenant_id_recorded_at", "recordings", ["tenant_id", "recorded_at"]
    )
    op.create_table(
        "recording_jobs",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("recording_id", BIG_ID, sa.ForeignKey("recordings.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", TS, nullable=False),
        sa.Column("locked_by", sa.String(128), nullable=True),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint(
            "recording_id", "kind", name="uq_recording_jobs_recording_id_kind"
        ),
    )
    op.create_index(
        "ix_recording_jobs_state_kind_not_before",
        "recording_jobs",
        ["state", "kind", "not_before"],
    )


def downgrade() -> None:
    op.drop_table("recording_jobs")
    op.drop_table("recordings")
