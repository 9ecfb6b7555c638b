"""SMS and e-mail: messages with their guard decision and fate, their event history, inbound
replies (STOP / 退订), and debtors' e-mail addresses.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("debtor_id", sa.Integer(), sa.ForeignKey("debtors.id"), nullable=False),
        sa.Column("batch_key", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("not_before", TS, nullable=True),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.Column("reservation_id", sa.String(64), nullable=True),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("provider_message_id", sa.String(100), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("delivered_at", TS, nullable=True),
        sa.UniqueConstraint(
            "tenant_id",
            "batch_key",
            "debtor_id",
            "channel",
            name="uq_messages_tenant_id_batch_key_debtor_id_channel",
        ),
    )
    op.create_index(
        "ix_messages_tenant_id_debtor_id_created_at",
        "messages",
        ["tenant_id", "debtor_id", "created_at"],
    )
    op.create_index("ix_messages_status_not_before", "messages", ["status", "not_before"])
    op.create_index("ix_messages_provider_message_id", "messages", ["provider_message_id"])
    op.create_table(
        "message_events",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("message_id", BIG_ID, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_message_events_message_id", "message_events", ["message_id"])
    op.create_table(
        "inbound_messages",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("debtor_id", sa.Integer(), sa.ForeignKey("debtors.id"), nullable=True),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("received_at", TS, nullable=False),
    )
    op.create_index(
        "ix_inbound_messages_tenant_id_sender", "inbound_messages", ["tenant_id", "sender"]
    )
    op.create_index("ix_inbound_messages_debtor_id", "inbound_messages", ["debtor_id"])
    op.create_table(
        "debtor_emails",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("debtor_id", sa.Integer(), sa.ForeignKey("debtors.id"), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("debtor_id", "address", name="uq_debtor_emails_debtor_id_address"),
    )


def downgrade() -> None:
    op.drop_table("debtor_emails")
    op.drop_table("inbound_messages")
    op.drop_table("message_events")
    op.drop_table("messages")
