"""The daily portfolio snapshot (migration 0014) on the store's shared declarative Base."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dialer.store.models import Base


class ReportSnapshot(Base):
    """One debt as it stood at the end of `snapshot_date`: what it owed, how late, whose.

    The store keeps only current balances; roll rates and recovery need yesterday's too, so
    the nightly `dialer report snapshot` writes a row per debt per day (idempotent per day).
    """

    __tablename__ = "report_snapshots"
    __table_args__ = (Index(None, "tenant_id", "snapshot_date", "bucket"),)

    snapshot_date: Mapped[date] = mapped_column(Date, primary_key=True)
    debt_id: Mapped[int] = mapped_column(ForeignKey("debts.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    balance: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    days_past_due: Mapped[int] = mapped_column(Integer)
    # definitions.BUCKET_ORDER: a days-past-due bucket while owing, else paid or closed
    bucket: Mapped[str] = mapped_column(String(12))
    debt_status: Mapped[str] = mapped_column(String(20))
    # The case's collector (cases.agent_id) and team (cases.team_id), as they were that day.
    agent_id: Mapped[str | None] = mapped_column(String(64))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    taken_at: Mapped[datetime]
