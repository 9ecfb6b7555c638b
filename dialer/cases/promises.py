"""Promises to pay: taken (one open per case, a newer one replaces it), kept by payments dated
by the due date, broken by the run of the day after it when they are not."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, func, insert, select, update

from dialer.cases.errors import CaseRefused
from dialer.cases.models import TRANSITIONS, Actor, CaseStatus, PromiseRunReport, PromiseStatus
from dialer.cases.state import CaseRow, begin_write, read_case, set_status
from dialer.store.db import Store
from dialer.store.models import Debt, Payment, Promise

log = logging.getLogger(__name__)

# A promise is due today or within this many days: further out it is a plan, not a promise.
PROMISE_HORIZON = timedelta(days=90)
_MAX_AMOUNT = Decimal(10) ** 14
# How many promises the run settles per transaction.
_RUN_BATCH = 500


def earliest_today(now: datetime) -> date:
    """The earliest date that is today somewhere on Earth (UTC-12): a debtor's "today" is
    never refused as past because the server's day is already tomorrow."""
    return (now.astimezone(UTC) - timedelta(hours=12)).date()


def check_amount(amount: Decimal, field: str) -> None:
    if not amount.is_finite() or amount <= 0:
        raise CaseRefused(field, f"the amount must be above 0, not {amount}")
    if amount >= _MAX_AMOUNT:
        raise CaseRefused(field, f"the amount {amount} is too large")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        raise CaseRefused(field, f"the amount {amount} has more than 4 decimal places")


def _currency(conn: Connection, case: CaseRow, debt_id: int | None) -> str:
    """The promise's currency: its debt's, else the one currency the case still owes in."""
    if debt_id is not None:
        return str(conn.execute(select(Debt.currency).where(Debt.id == debt_id)).scalar_one())
    owed = sorted(
        conn.execute(
            select(Debt.currency)
            .where(Debt.tenant_id == case.tenant_id, Debt.debtor_id == case.debtor_id)
            .where(Debt.balance > 0)
            .distinct()
        ).scalars()
    )
    if len(owed) == 1:
        return str(owed[0])
    if not owed:
        raise CaseRefused("amount", f"case {case.id} owes nothing: there is nothing to promise")
    raise CaseRefused(
        "debt", f"case {case.id} owes in {', '.join(owed)}: name the debt the promise is for"
    )


def add_promise(
    conn: Connection,
    case: CaseRow,
    amount: Decimal,
    due_date: date,
    actor: Actor,
    now: datetime,
    *,
    debt_id: int | None = None,
    disposition_id: int | None = None,
) -> int:
    """Record a promise on the (locked) case and move it to promise_to_pay; an open promise
    of the case is cancelled (replaced). CaseRefused when the case or the facts do not allow
    it."""
    if (
        case.status is not CaseStatus.PROMISE_TO_PAY
        and CaseStatus.PROMISE_TO_PAY not in TRANSITIONS[case.status]
    ):
        raise CaseRefused(
            "status", f"case {case.id} is {case.status.value}: no promise to pay is taken on it"
        )
    check_amount(amount, "amount")
    today = earliest_today(now)
    if not today <= due_date <= today + PROMISE_HORIZON:
        raise CaseRefused(
            "due_date",
            f"a promise is due between {today.isoformat()} and "
            f"{(today + PROMISE_HORIZON).isoformat()}, not {due_date.isoformat()}",
        )
    currency = _currency(conn, case, debt_id)
    replaced = conn.execute(
        update(Promise)
        .where(Promise.case_id == case.id, Promise.status == PromiseStatus.OPEN.value)
        .values(status=PromiseStatus.CANCELLED.value, resolved_at=now)
    ).rowcount
    promise_id = int(
        conn.execute(
            insert(Promise)
            .values(
                tenant_id=case.tenant_id,
                case_id=case.id,
                debt_id=debt_id,
                amount=amount,
                currency=currency,
                promised_on=today,
                due_date=due_date,
                status=PromiseStatus.OPEN.value,
                disposition_id=disposition_id,
                created_by=str(actor),
                created_at=now,
            )
            .returning(Promise.id)
        ).scalar_one()
    )
    reason = f"promise {promise_id}: {amount} {currency} by {due_date.isoformat()}"
    if replaced:
        reason += " (replaces the open one)"
    set_status(conn, case, CaseStatus.PROMISE_TO_PAY, actor, reason, now)
    return promise_id


@dataclass(frozen=True)
class _Open:
    id: int
    case_id: int
    debt_id: int | None
    amount: Decimal
    currency: str
    promised_on: date
    due_date: date


def _paid_towards(conn: Connection, promise: _Open) -> Decimal:
    """Payments on the case in the promise's currency, dated from the day it was made to its
    due date (and on its debt, when it names one)."""
    query = select(func.coalesce(func.sum(Payment.amount), 0)).where(
        Payment.case_id == promise.case_id,
        Payment.currency == promise.currency,
        Payment.paid_on >= promise.promised_on,
        Payment.paid_on <= promise.due_date,
    )
    if promise.debt_id is not None:
        query = query.where(Payment.debt_id == promise.debt_id)
    return Decimal(conn.execute(query).scalar_one())


def _open_promise(conn: Connection, case_id: int) -> _Open | None:
    row = conn.execute(
        select(
            Promise.id,
            Promise.case_id,
            Promise.debt_id,
            Promise.amount,
            Promise.currency,
            Promise.promised_on,
            Promise.due_date,
        )
        .where(Promise.case_id == case_id, Promise.status == PromiseStatus.OPEN.value)
        .limit(1)
    ).first()
    if row is None:
        return None
    return _Open(
        row.id,
        row.case_id,
        row.debt_id,
        Decimal(row.amount),
        row.currency,
        row.promised_on,
        row.due_date,
    )


def keep_if_paid(conn: Connection, case: CaseRow, now: datetime) -> int | None:
    """Mark the case's open promise kept when its payments reach the amount; its id if so."""
    promise = _open_promise(conn, case.id)
    if promise is None or _paid_towards(conn, promise) < promise.amount:
        return None
    _resolve(conn, promise.id, PromiseStatus.KEPT, now)
    return promise.id


def _resolve(conn: Connection, promise_id: int, status: PromiseStatus, now: datetime) -> None:
    conn.execute(
        update(Promise).where(Promise.id == promise_id).values(status=status.value, resolved_at=now)
    )


def run_promises(
    store: Store, today: date, now: datetime, *, tenant_id: int | None = None
) -> PromiseRunReport:
    """Settle every open promise whose due date is before `today`: kept when paid in time,
    else broken, and its case goes to broken_promise. Running it twice changes nothing more."""
    actor = Actor.system("promises")
    query = select(Promise.id, Promise.tenant_id, Promise.case_id).where(
        Promise.status == PromiseStatus.OPEN.value, Promise.due_date < today
    )
    if tenant_id is not None:
        query = query.where(Promise.tenant_id == tenant_id)
    with store.begin() as conn:
        due = conn.execute(query.order_by(Promise.id)).all()
    kept: list[int] = []
    broken: list[int] = []
    for start in range(0, len(due), _RUN_BATCH):
        with store.begin() as conn:
            begin_write(conn)
            for row in due[start : start + _RUN_BATCH]:
                case = read_case(conn, row.tenant_id, row.case_id, lock=True)
                found = _open_promise(conn, case.id)
                if found is None or found.id != row.id:
                    continue  # settled meanwhile (a payment, a newer promise)
                paid = _paid_towards(conn, found)
                if paid >= found.amount:
                    _resolve(conn, found.id, PromiseStatus.KEPT, now)
                    kept.append(found.id)
                    if case.status is CaseStatus.PROMISE_TO_PAY:
                        set_status(
                            conn,
                            case,
                            CaseStatus.IN_PROGRESS,
                            actor,
                            f"promise {found.id} kept: {paid} {found.currency} paid by "
                            f"{found.due_date.isoformat()}",
                            now,
                        )
                    continue
                _resolve(conn, found.id, PromiseStatus.BROKEN, now)
                broken.append(found.id)
                if case.status is CaseStatus.PROMISE_TO_PAY:
                    set_status(
                        conn,
                        case,
                        CaseStatus.BROKEN_PROMISE,
                        actor,
                        f"promise {found.id} broken: {found.amount} {found.currency} was due "
                        f"{found.due_date.isoformat()}, {paid} paid by then",
                        now,
                    )
    log.info(
        "= promises before %s: %d checked, %d kept, %d broken",
        today.isoformat(),
        len(due),
        len(kept),
        len(broken),
    )
    return PromiseRunReport(today, len(due), tuple(kept), tuple(broken))
