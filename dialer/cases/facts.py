"""A batch of cases as the score and the strategies see them, read with one set-based query per
batch: debts, promises, payments, calls and dispositions aggregated per case."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, and_, case, func, select
from sqlalchemy.sql import Select

from dialer.cases.models import CaseStatus
from dialer.cases.scoring import CaseFeatures, RiskBand, Score, terms_from_json
from dialer.cases.strategy import CaseFacts, Position
from dialer.store.models import (
    Address,
    CallAttempt,
    Case,
    Debt,
    Disposition,
    DispositionCode,
    Payment,
    Promise,
    PromiseStatus,
)

__all__ = [
    "OPEN_STATUSES",
    "RIGHT_PARTY_CODES",
    "CaseSnapshot",
    "batches",
    "load_features",
    "load_snapshots",
    "stored_score",
]

# The statuses a strategy works: legal, paid, settled and closed are out of its hands.
OPEN_STATUSES = (
    CaseStatus.NEW.value,
    CaseStatus.IN_PROGRESS.value,
    CaseStatus.PROMISE_TO_PAY.value,
    CaseStatus.BROKEN_PROMISE.value,
)
# Dispositions that mean the debtor themselves was on the line.
RIGHT_PARTY_CODES = (
    DispositionCode.PROMISE_TO_PAY.value,
    DispositionCode.PARTIAL_PAYMENT.value,
    DispositionCode.CALLBACK.value,
    DispositionCode.REFUSED.value,
    DispositionCode.DISPUTE.value,
)
# Dispositions that mean nobody was reached.
_NO_CONTACT = (DispositionCode.NO_CONTACT.value,)
RECENT = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class CaseSnapshot:
    """One case on one day: what the score reads, what the strategy's conditions read, where
    the case stands in its strategy, its stored score and any manager's override."""

    id: int
    tenant_id: int
    debtor_id: int
    status: CaseStatus
    features: CaseFeatures
    facts: CaseFacts
    position: Position | None
    score: Score | None
    overridden: bool
    queued_campaign: str | None
    last_contact: date | None

    @property
    def never_contacted(self) -> bool:
        return self.last_contact is None


def stored_score(
    value: float | None, band: str | None, terms: str | None, model: str | None
) -> Score | None:
    if value is None or band is None:
        return None
    return Score(float(value), RiskBand(band), terms_from_json(terms), model or "")


def batches(
    conn: Connection,
    tenant_id: int | None,
    size: int,
    *,
    open_only: bool,
    after_id: int = 0,
) -> Iterator[tuple[int, int]]:
    """(first id, last id) of successive batches of the tenant's cases, in id order."""
    while True:
        query = select(Case.id).where(Case.id > after_id)
        if tenant_id is not None:
            query = query.where(Case.tenant_id == tenant_id)
        if open_only:
            query = query.where(Case.status.in_(OPEN_STATUSES))
        ids = list(conn.execute(query.order_by(Case.id).limit(size)).scalars())
        if not ids:
            return
        yield ids[0], ids[-1]
        after_id = ids[-1]


def _in_range(lo: int, hi: int) -> Any:
    return Case.id.between(lo, hi)


def _snapshot_query(
    lo: int, hi: int, tenant_id: int | None, today: date, now: datetime, open_only: bool
) -> Select[*tuple[Any, ...]]:
    # Each aggregate reads only the rows of the batch's cases (joined through cases.id), so a
    # batch costs the same at the start and the end of a million cases.
    debts = (
        select(
            Case.id.label("case_id"),
            func.max(Debt.days_past_due).label("dpd"),
            func.sum(Debt.balance).label("balance"),
            func.sum(Debt.principal).label("principal"),
            func.count(Debt.id).label("debts"),
        )
        .join(Debt, and_(Debt.debtor_id == Case.debtor_id, Debt.tenant_id == Case.tenant_id))
        .where(_in_range(lo, hi))
        .group_by(Case.id)
        .subquery("d")
    )
    open_s, kept_s, broken_s = (
        PromiseStatus.OPEN.value,
        PromiseStatus.KEPT.value,
        PromiseStatus.BROKEN.value,
    )
    promises = (
        select(
            Promise.case_id.label("case_id"),
            func.sum(case((Promise.status == broken_s, 1), else_=0)).label("broken"),
            func.sum(case((Promise.status == kept_s, 1), else_=0)).label("kept"),
            func.sum(
                case(
                    (and_(Promise.status == open_s, Promise.due_date >= today), 1),
                    else_=0,
                )
            ).label("active"),
            func.max(case((Promise.status == open_s, Promise.id), else_=0)).label("open_id"),
            func.max(case((Promise.status == kept_s, Promise.id), else_=0)).label("kept_id"),
            func.max(case((Promise.status == broken_s, Promise.id), else_=0)).label("broken_id"),
        )
        .where(Promise.case_id.between(lo, hi))
        .group_by(Promise.case_id)
        .subquery("p")
    )
    paid = (
        select(Payment.case_id.label("case_id"), func.sum(Payment.amount).label("paid"))
        .where(Payment.case_id.between(lo, hi))
        .group_by(Payment.case_id)
        .subquery("pay")
    )
    since = now - RECENT
    attempts = (
        select(
            Case.id.label("case_id"),
            func.count(CallAttempt.id).label("attempts"),
        )
        .join(CallAttempt, CallAttempt.debtor_id == Case.debtor_id)
        .where(_in_range(lo, hi), CallAttempt.dialed_at >= since)
        .group_by(Case.id)
        .subquery("a")
    )
    contacted = Disposition.code.not_in(_NO_CONTACT)
    right_party = Disposition.code.in_(RIGHT_PARTY_CODES)
    talks = (
        select(
            Case.id.label("case_id"),
            func.max(case((contacted, Disposition.created_at))).label("last_contact"),
            func.max(case((right_party, Disposition.created_at))).label("last_rpc"),
            func.sum(case((and_(right_party, Disposition.created_at >= since), 1), else_=0)).label(
                "rpc_recent"
            ),
        )
        .join(CallAttempt, CallAttempt.debtor_id == Case.debtor_id)
        .join(Disposition, Disposition.attempt_id == CallAttempt.id)
        .where(_in_range(lo, hi))
        .group_by(Case.id)
        .subquery("t")
    )
    region = (
        select(Case.id.label("case_id"), func.min(Address.region).label("region"))
        .join(Address, Address.debtor_id == Case.debtor_id)
        .where(_in_range(lo, hi))
        .group_by(Case.id)
        .subquery("r")
    )
    query: Select[*tuple[Any, ...]] = (
        select(
            Case.id,
            Case.tenant_id,
            Case.debtor_id,
            Case.status,
            Case.risk_score,
            Case.risk_band,
            Case.risk_terms,
            Case.score_model,
            Case.strategy,
            Case.strategy_step,
            Case.strategy_since,
            Case.strategy_last_run,
            Case.strategy_finished,
            Case.override_at,
            Case.queued_campaign,
            debts.c.dpd,
            debts.c.balance,
            debts.c.principal,
            debts.c.debts,
            promises.c.broken,
            promises.c.kept,
            promises.c.active,
            promises.c.open_id,
            promises.c.kept_id,
            promises.c.broken_id,
            paid.c.paid,
            attempts.c.attempts,
            talks.c.last_contact,
            talks.c.last_rpc,
            talks.c.rpc_recent,
            region.c.region,
        )
        .outerjoin(debts, debts.c.case_id == Case.id)
        .outerjoin(promises, promises.c.case_id == Case.id)
        .outerjoin(paid, paid.c.case_id == Case.id)
        .outerjoin(attempts, attempts.c.case_id == Case.id)
        .outerjoin(talks, talks.c.case_id == Case.id)
        .outerjoin(region, region.c.case_id == Case.id)
        .where(_in_range(lo, hi))
        .order_by(Case.id)
    )
    if tenant_id is not None:
        query = query.where(Case.tenant_id == tenant_id)
    if open_only:
        query = query.where(Case.status.in_(OPEN_STATUSES))
    return query


def _day(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):  # SQLite hands an aggregate's datetime back as text
        return datetime.fromisoformat(value).date()
    return value if isinstance(value, date) else None


def _last_promise(row: Any) -> Literal["kept", "broken"] | None:
    """The latest promise's fate; None when the latest is still open (or there is none)."""
    open_id, kept_id, broken_id = (
        int(row.open_id or 0),
        int(row.kept_id or 0),
        int(row.broken_id or 0),
    )
    latest = max(open_id, kept_id, broken_id)
    if latest == 0 or latest == open_id:
        return None
    return "kept" if latest == kept_id else "broken"


def _features(row: Any, today: date) -> CaseFeatures:
    principal = float(row.principal or 0)
    paid = float(row.paid or 0)
    last_contact = _day(row.last_contact)
    return CaseFeatures(
        days_past_due=int(row.dpd or 0),
        balance=float(row.balance or 0),
        principal=principal,
        debts=int(row.debts or 0),
        broken_promises=int(row.broken or 0),
        kept_promises=int(row.kept or 0),
        paid_ratio=round(paid / principal, 6) if principal > 0 else 0.0,
        attempts_30d=int(row.attempts or 0),
        right_party_contacts_30d=int(row.rpc_recent or 0),
        days_since_last_contact=None if last_contact is None else (today - last_contact).days,
        region=row.region,
    )


def _snapshot(row: Any, today: date) -> CaseSnapshot:
    features = _features(row, today)
    last_contact = _day(row.last_contact)
    balance = features.balance
    dpd = features.days_past_due
    broken = features.broken_promises
    facts = CaseFacts(
        balance=balance,
        promise_active=bool(row.active),
        last_promise=_last_promise(row),
        last_contact=last_contact,
        last_right_party_contact=_day(row.last_rpc),
        days_past_due=dpd,
        broken_promises=broken,
    )
    position = None
    if row.strategy is not None:
        position = Position(
            strategy=row.strategy,
            step=int(row.strategy_step or 0),
            since=row.strategy_since,
            last_run=row.strategy_last_run,
            finished=bool(row.strategy_finished),
        )
    return CaseSnapshot(
        id=int(row.id),
        tenant_id=int(row.tenant_id),
        debtor_id=int(row.debtor_id),
        status=CaseStatus(row.status),
        features=features,
        facts=facts,
        position=position,
        score=stored_score(row.risk_score, row.risk_band, row.risk_terms, row.score_model),
        overridden=row.override_at is not None,
        queued_campaign=row.queued_campaign,
        last_contact=last_contact,
    )


def load_snapshots(
    conn: Connection,
    lo: int,
    hi: int,
    *,
    today: date,
    now: datetime,
    tenant_id: int | None = None,
    open_only: bool = False,
) -> list[CaseSnapshot]:
    """The cases with ids from `lo` to `hi` (of the tenant, open ones only when asked)."""
    query = _snapshot_query(lo, hi, tenant_id, today, now, open_only)
    return [_snapshot(row, today) for row in conn.execute(query)]


def load_features(
    conn: Connection,
    lo: int,
    hi: int,
    *,
    today: date,
    now: datetime,
    tenant_id: int | None = None,
    open_only: bool = False,
) -> list[tuple[int, CaseFeatures]]:
    """What the score reads of the cases with ids from `lo` to `hi`: the nightly re-score's
    read, without the strategy's facts."""
    query = _snapshot_query(lo, hi, tenant_id, today, now, open_only)
    return [(int(row.id), _features(row, today)) for row in conn.execute(query)]
