"""The messaging tables (migration 0010) on the store's shared declarative Base."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dialer.store.models import BIG_ID, Base


class Message(Base):
    """One SMS or e-mail to one debtor: its content, the guard's last decision, its fate.

    (tenant, batch, debtor, channel) is unique: a batch run again finds its messages and never
    creates (or sends) a second one."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "batch_key", "debtor_id", "channel"),
        Index(None, "tenant_id", "debtor_id", "created_at"),
        Index(None, "status", "not_before"),
        Index(None, "provider_message_id"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"))
    batch_key: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(8))
    template: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(320))  # E.164 number or e-mail address
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))
    not_before: Mapped[datetime | None]
    # The guard's last decision (allowed, reasons, next_allowed_at, rule set) as it was given.
    decision: Mapped[dict[str, Any] | None]
    reservation_id: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    tries: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]


class MessageEvent(Base):
    """A message's history: scheduled or blocked (with the guard's decision), sent (with its
    tries), failed, unknown, delivered, undelivered. What the case timeline shows under it."""

    __tablename__ = "message_events"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    message_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("messages.id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]]


class InboundMessage(Base):
    """A reply from a debtor's number; `action` says what it did (opt_out, or none)."""

    __tablename__ = "inbound_messages"
    __table_args__ = (Index(None, "tenant_id", "sender"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    debtor_id: Mapped[int | None] = mapped_column(ForeignKey("debtors.id"), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    sender: Mapped[str] = mapped_column(String(320))
    body: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime]


class DebtorEmail(Base):
    """A debtor's e-mail address (the portfolio import carries phones only)."""

    __tablename__ = "debtor_emails"
    __table_args__ = (UniqueConstraint("debtor_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"))
    address: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime]
