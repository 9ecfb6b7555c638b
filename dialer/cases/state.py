"""The case's state machine on a connection: opening cases, the one status choke point with its
history row, locks, and the effects a status has on the debts and the open promise."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from dialer.cases.errors import CaseNotFound, TransitionRefused
from dialer.cases.models import TRANSITIONS, Actor, CaseStatus, PromiseStatus, allowed_from
from dialer.store.models import Case, CaseHistory, Debt, DebtStatus, Promise

log = logging.getLogger(__name__)

# Statuses that end collection on the debts: the hopper dials open debts only.
_DEBTS_TO = {CaseStatus.SETTLED: DebtStatus.SETTLED, CaseStatus.CLOSED: DebtStatus.CLOSED}


@dataclass(frozen=True)
class CaseRow:
    id: int
    tenant_id: int
    debtor_id: int
    status: CaseStatus
    agent_id: str | None
    # Given to agent_id by hand; the nightly assignment keeps it there (migration 0015).
    agent_pinned: bool = False


def begin_write(conn: Connection) -> None:
    """Take SQLite's write lock first thing, so that two writers of a case queue up instead of
    one failing on upgrade; PostgreSQL locks the case row instead (lock_case)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _row(found: Any) -> CaseRow:
    return CaseRow(
        id=int(found.id),
        tenant_id=int(found.tenant_id),
        debtor_id=int(found.debtor_id),
        status=CaseStatus(found.status),
        agent_id=found.agent_id,
        agent_pinned=bool(found.agent_pinned),
    )


_COLUMNS = (Case.id, Case.tenant_id, Case.debtor_id, Case.status, Case.agent_id, Case.agent_pinned)


def read_case(conn: Connection, tenant_id: int, case_id: int, *, lock: bool = False) -> CaseRow:
    """The case, locked against other writers until the transaction ends when `lock`."""
    query = select(*_COLUMNS).where(Case.id == case_id, Case.tenant_id == tenant_id)
    if lock and conn.dialect.name != "sqlite":
        query = query.with_for_update()
    found = conn.execute(query).first()
    if found is None:
        raise CaseNotFound(case_id)
    return _row(found)


def open_cases(
    conn: Connection, tenant_id: int, debtor_ids: Iterable[int], actor: Actor, now: datetime
) -> int:
    """A new case for each of these debtors, who have none yet (just created). Returns how many."""
    rows = [
        {
            "tenant_id": tenant_id,
            "debtor_id": debtor_id,
            "status": CaseStatus.NEW.value,
            "opened_by": str(actor),
            "created_at": now,
            "status_changed_at": now,
        }
        for debtor_id in debtor_ids
    ]
    if rows:
        conn.execute(insert(Case), rows)
    return len(rows)


def case_of_debtor(
    conn: Connection, tenant_id: int, debtor_id: int, actor: Actor, now: datetime
) -> CaseRow:
    """The debtor's case, locked; opened now for a debtor stored before cases existed or by a
    path other than the import."""
    query = select(*_COLUMNS).where(Case.tenant_id == tenant_id, Case.debtor_id == debtor_id)
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    found = conn.execute(query).first()
    if found is None:
        open_cases(conn, tenant_id, [debtor_id], actor, now)
        found = conn.execute(query).one()
    return _row(found)


def record_history(
    conn: Connection,
    case: CaseRow,
    field: str,
    old: str | None,
    new: str | None,
    actor: Actor,
    reason: str,
    now: datetime,
) -> None:
    conn.execute(
        insert(CaseHistory).values(
            tenant_id=case.tenant_id,
            case_id=case.id,
            field=field,
            old_value=old,
            new_value=new,
            actor=str(actor),
            reason=reason,
            at=now,
        )
    )


def set_status(
    conn: Connection, case: CaseRow, new: CaseStatus, actor: Actor, reason: str, now: datetime
) -> CaseRow:
    """Move the case to `new`, writing who and why; TransitionRefused when the table does not
    allow it. The one place a case's status changes."""
    if new is case.status:
        return case
    if new not in TRANSITIONS[case.status]:
        raise TransitionRefused(case.id, case.status.value, new.value, allowed_from(case.status))
    conn.execute(
        update(Case).where(Case.id == case.id).values(status=new.value, status_changed_at=now)
    )
    record_history(conn, case, "status", case.status.value, new.value, actor, reason, now)
    if new is not CaseStatus.PROMISE_TO_PAY:
        # An open promise belongs to promise_to_pay; the run and payments resolve it before
        # leaving, so one still open here was overtaken (settled, closed, legal, by hand).
        conn.execute(
            update(Promise)
            .where(Promise.case_id == case.id, Promise.status == PromiseStatus.OPEN.value)
            .values(status=PromiseStatus.CANCELLED.value, resolved_at=now)
        )
    ended = _DEBTS_TO.get(new)
    if ended is not None:
        conn.execute(
            update(Debt)
            .where(Debt.debtor_id == case.debtor_id, Debt.status == DebtStatus.OPEN.value)
            .values(status=ended.value)
        )
    elif case.status is CaseStatus.CLOSED and new is CaseStatus.IN_PROGRESS:
        # Reopened: what is still owed is worked (and dialled) again.
        conn.execute(
            update(Debt)
            .where(
                Debt.debtor_id == case.debtor_id,
                Debt.status.in_([DebtStatus.CLOSED.value, DebtStatus.SETTLED.value]),
                Debt.balance > 0,
            )
            .values(status=DebtStatus.OPEN.value)
        )
    log.info("= case %s %s -> %s by %s: %s", case.id, case.status.value, new.value, actor, reason)
    return dataclasses.replace(case, status=new)


def balance_left(conn: Connection, case: CaseRow) -> Decimal:
    """What the debtor still owes over every debt of the case (any currency)."""
    total = conn.execute(
        select(func.coalesce(func.sum(Debt.balance), 0)).where(
            Debt.tenant_id == case.tenant_id, Debt.debtor_id == case.debtor_id
        )
    ).scalar_one()
    return Decimal(total)
