"""Callbacks the debtors asked for: which are due now, and marking what became of each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from dialer.errors import StoreError
from dialer.store.attempts import DialCandidate
from dialer.store.db import Store, error_reason
from dialer.store.models import Callback, CallbackStatus, Debtor, Phone


@dataclass(frozen=True)
class DueCallback:
    """A pending callback whose time has come, with what the dialer needs to place it."""

    id: int
    campaign_id: int
    debtor_id: int
    debt_id: int | None
    phone_id: int
    e164: str
    phone_type: str
    timezone: str | None  # the phone's zone, else the debtor's (as the hopper gives it)
    debtor_external_id: str
    due_at: datetime
    agent_id: str | None  # set: only this agent takes the call
    disposition_id: int | None

    def candidate(self) -> DialCandidate:
        """The callback as the dialer's gate and attempt rows take a number to dial; it goes
        through the compliance guard like any other call."""
        return DialCandidate(
            debtor_id=self.debtor_id,
            debt_id=self.debt_id,
            phone_id=self.phone_id,
            e164=self.e164,
            phone_type=self.phone_type,
            timezone=self.timezone,
            debtor_external_id=self.debtor_external_id,
        )


def due_callbacks(
    store: Store, tenant_id: int, campaign_id: int, now: datetime, limit: int
) -> list[DueCallback]:
    """Pending callbacks of the campaign due at `now` or before, the longest overdue first
    (the (campaign_id, status, due_at) index serves it)."""
    if limit <= 0:
        return []
    c = Callback
    query = (
        select(
            c.id,
            c.campaign_id,
            c.debtor_id,
            c.debt_id,
            c.phone_id,
            Phone.e164,
            Phone.phone_type,
            Phone.timezone.label("phone_timezone"),
            Debtor.timezone.label("debtor_timezone"),
            Debtor.external_id,
            c.due_at,
            c.agent_id,
            c.disposition_id,
        )
        .join(Phone, Phone.id == c.phone_id)
        .join(Debtor, Debtor.id == c.debtor_id)
        .where(
            c.campaign_id == campaign_id,
            c.status == CallbackStatus.PENDING.value,
            c.due_at <= now,
            c.tenant_id == tenant_id,
        )
        .order_by(c.due_at, c.id)
        .limit(limit)
    )
    try:
        with store.begin() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"due callbacks of campaign {campaign_id}: {error_reason(exc)}") from exc
    return [
        DueCallback(
            id=int(r.id),
            campaign_id=int(r.campaign_id),
            debtor_id=int(r.debtor_id),
            debt_id=r.debt_id,
            phone_id=int(r.phone_id),
            e164=r.e164,
            phone_type=r.phone_type,
            timezone=r.phone_timezone or r.debtor_timezone,
            debtor_external_id=r.external_id,
            due_at=r.due_at,
            agent_id=r.agent_id,
            disposition_id=r.disposition_id,
        )
        for r in rows
    ]


def mark_callback(
    store: Store, callback_id: int, status: CallbackStatus, attempt_id: int | None = None
) -> None:
    """Record what became of a callback (dialled with `attempt_id`, done, cancelled, or back
    to pending); StoreError if there is no such callback."""
    try:
        new_status = CallbackStatus(status)
    except ValueError as exc:
        known = ", ".join(s.value for s in CallbackStatus)
        raise StoreError(f"callback {callback_id}: unknown status {status!r} ({known})") from exc
    values: dict[str, object] = {"status": new_status.value}
    if attempt_id is not None:
        values["attempt_id"] = attempt_id
    try:
        with store.begin() as conn:
            result = conn.execute(update(Callback).where(Callback.id == callback_id).values(values))
    except SQLAlchemyError as exc:
        raise StoreError(f"callback {callback_id}: {error_reason(exc)}") from exc
    if result.rowcount == 0:
        raise StoreError(f"callback {callback_id} does not exist")


def next_callback_at(store: Store, tenant_id: int, campaign_id: int) -> datetime | None:
    """When the campaign's earliest pending callback is due (None: none is pending): a run
    whose list is done waits for callbacks due soon, as it waits for phones the guard allows
    again soon."""
    c = Callback
    query = select(func.min(c.due_at)).where(
        c.campaign_id == campaign_id,
        c.status == CallbackStatus.PENDING.value,
        c.tenant_id == tenant_id,
    )
    try:
        with store.begin() as conn:
            found: datetime | None = conn.execute(query).scalar()
    except SQLAlchemyError as exc:
        raise StoreError(f"callbacks of campaign {campaign_id}: {error_reason(exc)}") from exc
    return found
