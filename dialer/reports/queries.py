"""The report's set-based SQL: every figure is a GROUP BY in the database, never a Python loop
over attempts. Each function returns a few rows per group (and per agent), whatever the size of
the period; the service turns them into figures.

Instants are aware UTC datetimes (the service converts the report's local days); dates
(`paid_on`, `due_date`, snapshot dates) are compared as dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    func,
    literal,
    select,
)
from sqlalchemy.orm import aliased

from dialer.calls.models import Outcome
from dialer.reports.definitions import (
    ANSWER_MARGIN_S,
    CLOSED_BUCKET,
    PAID_BUCKET,
    RIGHT_PARTY_CODES,
)
from dialer.reports.models import GroupBy
from dialer.reports.tables import ReportSnapshot
from dialer.store.models import (
    CallAttempt,
    Campaign,
    Case,
    Debt,
    Disposition,
    DispositionCode,
    Payment,
    Promise,
    PromiseStatus,
    QaScore,
    Team,
)

# A disposition is looked for up to this long after its call's period (wrap-up, a late note).
DISPOSITION_LAG = timedelta(days=1)
NOT_OWING = (PAID_BUCKET, CLOSED_BUCKET)


@dataclass(frozen=True)
class Window:
    """The period as the queries see it: UTC instants for times, local dates for dates."""

    tenant_id: int
    start: datetime  # first instant of the first day
    end: datetime  # first instant after the last day
    first_day: date
    last_day: date
    # The first instant of each day after the first (day i begins at bounds[i-1]).
    day_bounds: tuple[datetime, ...] = ()


def _seconds_between(dialect: str, start: Any, end: Any) -> ColumnElement[Any]:
    if dialect == "sqlite":
        # Stored as ISO text in UTC; julianday() reads it, with sub-second precision.
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


def _sum(expr: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(expr), 0)


def count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return _sum(case((condition, 1), else_=0))


def _group_of_attempt(by: GroupBy) -> Any:
    if by is GroupBy.CAMPAIGN:
        return CallAttempt.campaign_id
    return Case.agent_id if by is GroupBy.COLLECTOR else Case.team_id


def _with_case(query: Select[Any], by: GroupBy) -> Select[Any]:
    """Join the attempt's case when the grouping needs the case's collector or team."""
    if by is GroupBy.CAMPAIGN:
        return query
    return query.outerjoin(
        Case, and_(Case.debtor_id == CallAttempt.debtor_id, Case.tenant_id == CallAttempt.tenant_id)
    )


def _day_index(column: Any, w: Window) -> ColumnElement[Any]:
    """Which day of the window an instant falls on (0 for the first)."""
    if not w.day_bounds:
        return literal(0)
    return case(
        *((column < bound, i) for i, bound in enumerate(w.day_bounds)),
        else_=len(w.day_bounds),
    )


@dataclass(frozen=True)
class AttemptRow:
    group: Any
    agent_id: str | None
    attempts: int
    contacts: int
    live_answers: int
    abandoned: int
    calls: int  # connected to an agent
    talk_seconds: float


def attempt_counts(conn: Connection, w: Window, by: GroupBy) -> list[AttemptRow]:
    """One scan of the period's attempts (and those dialled just before it that were answered
    inside it), grouped by the report's group and the agent who took the call."""
    a = CallAttempt
    dialled = a.dialed_at >= w.start
    answered_inside = and_(a.answered_at >= w.start, a.answered_at < w.end)
    live = a.outcome == Outcome.ANSWERED.value
    talked = and_(dialled, a.connected_at.is_not(None), a.hungup_at.is_not(None))
    talk = case((talked, _seconds_between(conn.dialect.name, a.connected_at, a.hungup_at)))
    group = _group_of_attempt(by)
    query = _with_case(
        select(
            group,
            a.agent_id,
            count_if(dialled),
            count_if(and_(dialled, live)),
            count_if(and_(answered_inside, live)),
            count_if(and_(answered_inside, a.abandoned.is_(True))),
            count_if(and_(dialled, a.connected_at.is_not(None))),
            _sum(talk),
        ).select_from(a),
        by,
    )
    query = query.where(
        a.tenant_id == w.tenant_id,
        a.dialed_at >= w.start - timedelta(seconds=ANSWER_MARGIN_S),
        a.dialed_at < w.end,
    ).group_by(group, a.agent_id)
    return [
        AttemptRow(g, agent, int(n), int(c), int(la), int(ab), int(calls), float(t))
        for g, agent, n, c, la, ab, calls, t in conn.execute(query)
    ]


def _dispositions_by_attempt(w: Window) -> Any:
    """Per attempt: did any of its dispositions reach the debtor, promise, and how much.
    (An attempt may carry several dispositions; it counts once.)"""
    d = Disposition
    ptp = d.code == DispositionCode.PROMISE_TO_PAY.value
    return (
        select(
            d.attempt_id.label("attempt_id"),
            func.max(case((d.code.in_(RIGHT_PARTY_CODES), 1), else_=0)).label("rpc"),
            func.max(case((ptp, 1), else_=0)).label("ptp"),
            func.max(case((ptp, d.promise_amount))).label("amount"),
        )
        .where(
            d.tenant_id == w.tenant_id,
            d.created_at >= w.start,
            d.created_at < w.end + DISPOSITION_LAG,
        )
        .group_by(d.attempt_id)
        .subquery()
    )


@dataclass(frozen=True)
class DispositionRow:
    group: Any
    agent_id: str | None
    right_party_contacts: int
    promises: int
    promised_amount: Decimal


def disposition_counts(conn: Connection, w: Window, by: GroupBy) -> list[DispositionRow]:
    """Right-party contacts and promises of the period's attempts, by group and agent."""
    a = CallAttempt
    d = _dispositions_by_attempt(w)
    group = _group_of_attempt(by)
    query = _with_case(
        select(group, a.agent_id, _sum(d.c.rpc), _sum(d.c.ptp), _sum(d.c.amount)).select_from(
            d.join(a, a.id == d.c.attempt_id)
        ),
        by,
    )
    query = query.where(
        a.tenant_id == w.tenant_id, a.dialed_at >= w.start, a.dialed_at < w.end
    ).group_by(group, a.agent_id)
    return [
        DispositionRow(g, agent, int(rpc), int(ptp), Decimal(amount))
        for g, agent, rpc, ptp, amount in conn.execute(query)
    ]


@dataclass(frozen=True)
class DayRow:
    day_index: int
    attempts: int
    contacts: int
    promises: int


def day_counts(conn: Connection, w: Window) -> list[DayRow]:
    """Attempts, contacts and promises per day of the window (for a week's or month's chart)."""
    a = CallAttempt
    day = _day_index(a.dialed_at, w)
    live = a.outcome == Outcome.ANSWERED.value
    calls = (
        select(day, func.count(), count_if(live))
        .where(a.tenant_id == w.tenant_id, a.dialed_at >= w.start, a.dialed_at < w.end)
        .group_by(day)
    )
    d = _dispositions_by_attempt(w)
    promises = (
        select(day, _sum(d.c.ptp))
        .select_from(d.join(a, a.id == d.c.attempt_id))
        .where(a.tenant_id == w.tenant_id, a.dialed_at >= w.start, a.dialed_at < w.end)
        .group_by(day)
    )
    by_day = {int(i): int(p) for i, p in conn.execute(promises)}
    return [
        DayRow(int(i), int(n), int(c), by_day.get(int(i), 0)) for i, n, c in conn.execute(calls)
    ]


@dataclass(frozen=True)
class QaRow:
    agent_id: str | None
    score_sum: float
    scored: int


def qa_by_agent(conn: Connection, w: Window) -> list[QaRow]:
    """QA scores of the period's calls, by the agent who took them."""
    a, q = CallAttempt, QaScore
    query = (
        select(a.agent_id, _sum(q.score), func.count())
        .select_from(q)
        .join(a, a.id == q.attempt_id)
        .where(a.tenant_id == w.tenant_id, a.dialed_at >= w.start, a.dialed_at < w.end)
        .group_by(a.agent_id)
    )
    return [QaRow(agent, float(s), int(n)) for agent, s, n in conn.execute(query)]


@dataclass(frozen=True)
class PromiseRow:
    group: Any
    kept: int
    broken: int


def promises_due(conn: Connection, w: Window, by: GroupBy) -> list[PromiseRow]:
    """Promises due in the period, settled kept or broken, by group (campaign: the call's)."""
    p = Promise
    kept = p.status == PromiseStatus.KEPT.value
    broken = p.status == PromiseStatus.BROKEN.value
    if by is GroupBy.CAMPAIGN:
        group: Any = CallAttempt.campaign_id
        source: Any = p.__table__.outerjoin(Disposition, Disposition.id == p.disposition_id)
        source = source.outerjoin(CallAttempt, CallAttempt.id == Disposition.attempt_id)
    else:
        group = Case.agent_id if by is GroupBy.COLLECTOR else Case.team_id
        source = p.__table__.join(Case, Case.id == p.case_id)
    query = (
        select(group, count_if(kept), count_if(broken))
        .select_from(source)
        .where(
            p.tenant_id == w.tenant_id,
            p.status.in_((PromiseStatus.KEPT.value, PromiseStatus.BROKEN.value)),
            p.due_date >= w.first_day,
            p.due_date <= w.last_day,
        )
        .group_by(group)
    )
    return [PromiseRow(g, int(k), int(b)) for g, k, b in conn.execute(query)]


@dataclass(frozen=True)
class PaymentRow:
    paid_on: date
    agent_id: str | None  # the case's collector now
    team_id: int | None  # the case's team now
    currency: str
    amount: Decimal


def payments(conn: Connection, w: Window) -> list[PaymentRow]:
    """Payments dated in the period, by day, case collector, case team and currency."""
    p = Payment
    query = (
        select(p.paid_on, Case.agent_id, Case.team_id, p.currency, _sum(p.amount))
        .select_from(p)
        .join(Case, Case.id == p.case_id)
        .where(p.tenant_id == w.tenant_id, p.paid_on >= w.first_day, p.paid_on <= w.last_day)
        .group_by(p.paid_on, Case.agent_id, Case.team_id, p.currency)
    )
    return [
        PaymentRow(d, agent, team, cur, Decimal(amt))
        for d, agent, team, cur, amt in conn.execute(query)
    ]


def snapshot_taken(conn: Connection, tenant_id: int, day: date) -> bool:
    s = ReportSnapshot
    query = select(s.debt_id).where(s.tenant_id == tenant_id, s.snapshot_date == day).limit(1)
    return conn.execute(query).first() is not None


@dataclass(frozen=True)
class PortfolioRow:
    agent_id: str | None  # the collector at the opening
    team_id: int | None
    currency: str
    debts: int
    assigned: Decimal
    recovered: Decimal


def opening_portfolio(conn: Connection, w: Window, opening: date) -> list[PortfolioRow]:
    """What was owed at the opening snapshot and what the period's payments took off it, by
    the collector and team that held each debt then."""
    s, p = ReportSnapshot, Payment
    owing = (s.tenant_id == w.tenant_id, s.snapshot_date == opening, s.bucket.not_in(NOT_OWING))
    assigned = (
        select(s.agent_id, s.team_id, s.currency, func.count(), _sum(s.balance))
        .where(*owing)
        .group_by(s.agent_id, s.team_id, s.currency)
    )
    recovered = (
        select(s.agent_id, s.team_id, p.currency, _sum(p.amount))
        .select_from(p)
        .join(s, and_(s.debt_id == p.debt_id, s.snapshot_date == opening))
        .where(*owing, p.paid_on >= w.first_day, p.paid_on <= w.last_day)
        .group_by(s.agent_id, s.team_id, p.currency)
    )
    got = {(a, t, c): Decimal(v) for a, t, c, v in conn.execute(recovered)}
    return [
        PortfolioRow(a, t, c, int(n), Decimal(bal), got.get((a, t, c), Decimal(0)))
        for a, t, c, n, bal in conn.execute(assigned)
    ]


@dataclass(frozen=True)
class RollRow:
    agent_id: str | None
    team_id: int | None
    from_bucket: str
    to_bucket: str
    debts: int
    balance: Decimal


def roll_matrix(
    conn: Connection, tenant_id: int, opening: date, closing: date, currency: str | None
) -> list[RollRow]:
    """Debts in `currency` owing at the opening snapshot by their bucket then and at the
    closing snapshot (debts missing from the closing one are left out), by the opening's
    collector and team."""
    o = aliased(ReportSnapshot, name="o")
    c = aliased(ReportSnapshot, name="c")
    query = (
        select(o.agent_id, o.team_id, o.bucket, c.bucket, func.count(), _sum(o.balance))
        .select_from(o)
        .join(c, and_(c.debt_id == o.debt_id, c.snapshot_date == closing))
        .where(
            o.tenant_id == tenant_id,
            o.snapshot_date == opening,
            o.bucket.not_in(NOT_OWING),
            o.currency == currency,
        )
        .group_by(o.agent_id, o.team_id, o.bucket, c.bucket)
    )
    return [
        RollRow(a, t, fb, tb, int(n), Decimal(bal)) for a, t, fb, tb, n, bal in conn.execute(query)
    ]


def main_currency(conn: Connection, tenant_id: int) -> str | None:
    """The currency most of the tenant's debts are in (the report's money figures are in it)."""
    query = (
        select(Debt.currency)
        .where(Debt.tenant_id == tenant_id)
        .group_by(Debt.currency)
        .order_by(func.count().desc(), Debt.currency)
        .limit(1)
    )
    found = conn.execute(query).scalar()
    return None if found is None else str(found)


def campaign_names(conn: Connection, tenant_id: int) -> dict[str, str]:
    query = select(Campaign.id, Campaign.name).where(Campaign.tenant_id == tenant_id)
    return {str(i): str(n) for i, n in conn.execute(query)}


def team_names(conn: Connection, tenant_id: int) -> dict[str, str]:
    query = select(Team.id, Team.name).where(Team.tenant_id == tenant_id)
    return {str(i): str(n) for i, n in conn.execute(query)}
