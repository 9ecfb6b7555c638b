"""The cases' use cases, as the CLI, the web API and the agent's desk call them: read a case
whole, note, change status, assign, promise, pay, and what a disposition does to the case."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from dialer.cases import payments, promises, timeline
from dialer.cases.errors import CaseError, CaseRefused, check_text
from dialer.cases.models import (
    AUTOMATIC_ONLY,
    Actor,
    CaseStatus,
    CaseView,
    DebtView,
    HistoryView,
    NoteView,
    PaymentIn,
    PaymentResult,
    PaymentView,
    PromiseView,
    ScoreTermView,
)
from dialer.cases.scoring import terms_from_json
from dialer.cases.state import (
    CaseRow,
    begin_write,
    case_of_debtor,
    read_case,
    record_history,
    set_status,
)
from dialer.desk.errors import DispositionError
from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import (
    CallAttempt,
    Case,
    CaseHistory,
    CaseNote,
    Debt,
    Debtor,
    DispositionCode,
    Payment,
    Promise,
)

log = logging.getLogger(__name__)

MAX_NOTE = 4000
# A refused promise, told against the disposition form's field.
_DISPOSITION_FIELD = {"amount": "promise_amount", "due_date": "promise_date"}
MAX_REASON = 500


def _store_error(what: str, exc: SQLAlchemyError) -> StoreError:
    return StoreError(f"{what}: {error_reason(exc)}")


def _reason(reason: str, field: str = "reason") -> str:
    """A reason for the case history, refused naming `field` when empty or too long."""
    reason = check_text(field, reason).strip()
    if not reason:
        raise CaseRefused(field, "say why (the case history keeps it)")
    if len(reason) > MAX_REASON:
        raise CaseRefused(field, f"the reason is longer than {MAX_REASON} characters")
    return reason


# ----- reading -----


def get_case(
    store: Store,
    tenant_id: int,
    case_id: int,
    *,
    sources: Sequence[timeline.TimelineSource] = timeline.DEFAULT_SOURCES,
    timeline_limit: int = timeline.DEFAULT_LIMIT,
) -> CaseView:
    """The case with its debts, promises, payments, notes, history and timeline.
    CaseNotFound when the tenant has no such case."""
    try:
        with store.begin() as conn:
            return _view(conn, read_case(conn, tenant_id, case_id), sources, timeline_limit)
    except SQLAlchemyError as exc:
        raise _store_error(f"case {case_id}", exc) from exc


def _view(
    conn: Connection,
    case: CaseRow,
    sources: Sequence[timeline.TimelineSource],
    limit: int,
) -> CaseView:
    head = conn.execute(
        select(Case, Debtor.external_id.label("debtor_ext"), Debtor.full_name)
        .join(Debtor, Debtor.id == Case.debtor_id)
        .where(Case.id == case.id)
    ).one()
    debts = tuple(
        DebtView(
            d.id,
            d.external_id,
            Decimal(d.principal),
            Decimal(d.balance),
            d.currency,
            d.days_past_due,
            d.status,
        )
        for d in conn.execute(
            select(Debt)
            .where(Debt.tenant_id == case.tenant_id, Debt.debtor_id == case.debtor_id)
            .order_by(Debt.id)
        )
    )
    balance: dict[str, Decimal] = {}
    for d in debts:
        balance[d.currency] = balance.get(d.currency, Decimal(0)) + d.balance
    promise_rows = conn.execute(
        select(Promise).where(Promise.case_id == case.id).order_by(Promise.id.desc()).limit(limit)
    )
    payment_rows = conn.execute(
        select(Payment).where(Payment.case_id == case.id).order_by(Payment.id.desc()).limit(limit)
    )
    note_rows = conn.execute(
        select(CaseNote)
        .where(CaseNote.case_id == case.id)
        .order_by(CaseNote.id.desc())
        .limit(limit)
    )
    history_rows = conn.execute(
        select(CaseHistory)
        .where(CaseHistory.case_id == case.id)
        .order_by(CaseHistory.id.desc())
        .limit(limit)
    )
    return CaseView(
        id=case.id,
        tenant_id=case.tenant_id,
        debtor_id=case.debtor_id,
        debtor_external_id=head.debtor_ext,
        debtor_name=head.full_name,
        status=case.status.value,
        agent_id=case.agent_id,
        agent_kept=case.agent_pinned,
        opened_by=head.opened_by,
        created_at=head.created_at,
        status_changed_at=head.status_changed_at,
        balance=balance,
        debts=debts,
        promises=tuple(
            PromiseView(
                p.id,
                p.debt_id,
                Decimal(p.amount),
                p.currency,
                p.promised_on,
                p.due_date,
                p.status,
                p.disposition_id,
                p.created_by,
                p.created_at,
                p.resolved_at,
            )
            for p in promise_rows
        ),
        payments=tuple(
            PaymentView(
                p.id,
                p.external_id,
                p.debt_id,
                Decimal(p.amount),
                p.currency,
                p.paid_on,
                p.method,
                p.reference,
                p.source,
                p.recorded_by,
                p.created_at,
            )
            for p in payment_rows
        ),
        notes=tuple(NoteView(n.id, n.author, n.body, n.created_at) for n in note_rows),
        history=tuple(
            HistoryView(h.id, h.field, h.old_value, h.new_value, h.actor, h.reason, h.at)
            for h in history_rows
        ),
        timeline=timeline.build_timeline(conn, case, sources, limit),
        **_strategy_fields(head),
    )


def _strategy_fields(row: Any) -> dict[str, Any]:
    """The case's stored score and strategy position, as CaseView carries them."""
    return {
        "risk_score": row.risk_score,
        "risk_band": row.risk_band,
        "risk_terms": tuple(
            ScoreTermView(t.feature, t.value, t.contribution, t.reason)
            for t in terms_from_json(row.risk_terms)
        ),
        "scored_at": row.scored_at,
        "strategy": row.strategy,
        "strategy_step": row.strategy_step,
        "strategy_since": row.strategy_since,
        "strategy_finished": bool(row.strategy_finished),
        "strategy_reasons": tuple(json.loads(row.strategy_reasons or "[]")),
        "override_by": row.override_by,
        "override_why": row.override_why,
        "override_at": row.override_at,
        "queued_campaign": row.queued_campaign,
    }


def case_of(store: Store, tenant_id: int, debtor_id: int) -> int | None:
    """The id of the debtor's case, if it has one."""
    with store.begin() as conn:
        found = conn.execute(
            select(Case.id).where(Case.tenant_id == tenant_id, Case.debtor_id == debtor_id)
        ).scalar()
    return None if found is None else int(found)


def require_case(store: Store, tenant_id: int, case_id: int) -> None:
    """CaseNotFound unless the tenant has this case."""
    with store.begin() as conn:
        read_case(conn, tenant_id, case_id)


def agent_works(store: Store, tenant_id: int, case_id: int, agent_id: str) -> bool:
    """Whether the case is this agent's: assigned to them, or a debtor they have talked to."""
    with store.begin() as conn:
        case = read_case(conn, tenant_id, case_id)
        if case.agent_id == agent_id:
            return True
        took = conn.execute(
            select(CallAttempt.id)
            .where(
                CallAttempt.tenant_id == tenant_id,
                CallAttempt.debtor_id == case.debtor_id,
                CallAttempt.agent_id == agent_id,
            )
            .limit(1)
        ).first()
    return took is not None


# ----- changing -----


def add_note(
    store: Store, tenant_id: int, case_id: int, body: str, actor: Actor, now: datetime
) -> int:
    body = check_text("body", body).strip()
    if not body:
        raise CaseRefused("body", "the note is empty")
    if len(body) > MAX_NOTE:
        raise CaseRefused("body", f"the note is longer than {MAX_NOTE} characters")
    try:
        with store.begin() as conn:
            case = read_case(conn, tenant_id, case_id)
            return int(
                conn.execute(
                    insert(CaseNote)
                    .values(
                        tenant_id=tenant_id,
                        case_id=case.id,
                        author=str(actor),
                        body=body,
                        created_at=now,
                    )
                    .returning(CaseNote.id)
                ).scalar_one()
            )
    except SQLAlchemyError as exc:
        raise _store_error(f"note on case {case_id}", exc) from exc


def change_status(
    store: Store,
    tenant_id: int,
    case_id: int,
    new: CaseStatus,
    actor: Actor,
    reason: str,
    now: datetime,
) -> CaseStatus:
    """A person's change of status (in_progress, settled, legal, closed): TransitionRefused
    when the table forbids it; paid, broken_promise and promise_to_pay come from payments,
    the promise run and promises."""
    new = CaseStatus(new)
    if new in AUTOMATIC_ONLY:
        raise CaseRefused(
            "status", f"{new.value} is set by payments and the promise run, not by hand"
        )
    if new is CaseStatus.PROMISE_TO_PAY:
        raise CaseRefused("status", "a promise to pay is recorded with its amount and due date")
    why = _reason(reason)
    try:
        with store.begin() as conn:
            begin_write(conn)
            case = read_case(conn, tenant_id, case_id, lock=True)
            return set_status(conn, case, new, actor, why, now).status
    except SQLAlchemyError as exc:
        raise _store_error(f"status of case {case_id}", exc) from exc


def assign(
    store: Store,
    tenant_id: int,
    case_id: int,
    agent_id: str | None,
    actor: Actor,
    reason: str,
    now: datetime,
    *,
    keep: bool = True,
) -> None:
    """Give the case to a collector (None: to nobody), kept in the history. With `keep` the
    nightly assignment leaves it with that collector while they work cases."""
    why = _reason(reason)
    if agent_id is not None:
        check_text("agent_id", agent_id)
    pinned = keep and agent_id is not None
    try:
        with store.begin() as conn:
            begin_write(conn)
            case = read_case(conn, tenant_id, case_id, lock=True)
            was_pinned = case.agent_pinned
            if case.agent_id == agent_id and was_pinned == pinned:
                return
            conn.execute(
                update(Case)
                .where(Case.id == case.id)
                .values(agent_id=agent_id, agent_pinned=pinned)
            )
            if case.agent_id != agent_id:
                record_history(conn, case, "agent", case.agent_id, agent_id, actor, why, now)
            elif was_pinned != pinned:
                # Same collector, only whether the nightly rules may move it changed.
                record_history(
                    conn,
                    case,
                    "agent_kept",
                    "yes" if was_pinned else "no",
                    "yes" if pinned else "no",
                    actor,
                    why,
                    now,
                )
    except SQLAlchemyError as exc:
        raise _store_error(f"assignment of case {case_id}", exc) from exc


def make_promise(
    store: Store,
    tenant_id: int,
    case_id: int,
    amount: Decimal,
    due_date: date,
    actor: Actor,
    now: datetime,
    *,
    debt: str | None = None,
) -> int:
    """A promise to pay on the case (`debt`: the creditor's account number, needed when the
    case owes in several currencies); the case goes to promise_to_pay."""
    try:
        with store.begin() as conn:
            begin_write(conn)
            case = read_case(conn, tenant_id, case_id, lock=True)
            debt_id = None
            if debt is not None:
                check_text("debt_id", debt)
                debt_id = conn.execute(
                    select(Debt.id).where(
                        Debt.tenant_id == tenant_id,
                        Debt.debtor_id == case.debtor_id,
                        Debt.external_id == debt,
                    )
                ).scalar()
                if debt_id is None:
                    raise CaseRefused("debt_id", f"case {case_id} has no debt {debt!r}")
            return promises.add_promise(conn, case, amount, due_date, actor, now, debt_id=debt_id)
    except SQLAlchemyError as exc:
        raise _store_error(f"promise on case {case_id}", exc) from exc


def post_payment(
    store: Store, tenant_id: int, case_id: int, payment: PaymentIn, actor: Actor, now: datetime
) -> PaymentResult:
    """A payment posted on the case (through the API); see payments.apply_payment."""
    return payments.post_payment(
        store, tenant_id, payment, case_id=case_id, source="api", actor=actor, now=now
    )


# ----- from the agent's desk -----


def on_disposition(
    conn: Connection,
    *,
    tenant_id: int,
    debtor_id: int,
    debt_id: int | None,
    disposition_id: int,
    code: DispositionCode,
    promise_amount: Decimal | None,
    promise_date: date | None,
    agent_id: str,
    now: datetime,
) -> None:
    """What a disposition does to the debtor's case, in the disposition's own transaction:
    a promise to pay is taken (the case goes to promise_to_pay), a deceased debtor's case is
    closed, and a new case is in progress once an agent has worked it. CaseRefused when the
    case cannot take the promise (it is with legal, paid, closed): nothing is written.

    A partial payment told on the call is not a payment: the creditor's payments file (or
    the API) records the money when it arrives, under the creditor's own payment id.
    """
    actor = Actor.agent(agent_id)
    case = case_of_debtor(conn, tenant_id, debtor_id, Actor.system("desk"), now)
    why = f"disposition {disposition_id} {code.value}"
    if code is DispositionCode.PROMISE_TO_PAY:
        if promise_amount is None or promise_date is None:
            raise CaseError(f"{why}: a promise needs its amount and date")
        try:
            promises.add_promise(
                conn,
                case,
                promise_amount,
                promise_date,
                actor,
                now,
                debt_id=debt_id,
                disposition_id=disposition_id,
            )
        except CaseRefused as exc:
            # The agent sees it on the disposition form, against the field they can change.
            field = _DISPOSITION_FIELD.get(exc.field, "code")
            raise DispositionError(field, exc.message) from exc
        return
    if code is DispositionCode.DECEASED:
        if case.status not in (CaseStatus.CLOSED, CaseStatus.PAID, CaseStatus.SETTLED):
            set_status(conn, case, CaseStatus.CLOSED, actor, f"debtor deceased ({why})", now)
        return
    if case.status is CaseStatus.NEW:
        set_status(conn, case, CaseStatus.IN_PROGRESS, actor, f"first worked: {why}", now)
