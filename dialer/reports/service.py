"""Reports as use cases: `daily_report` (a day, week or month, by campaign, collector or team)
and `take_snapshot` (the nightly portfolio snapshot that roll rates and recovery read)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, case, delete, func, insert, literal, select
from sqlalchemy.exc import SQLAlchemyError

from dialer.reports import queries as q
from dialer.reports.definitions import (
    BUCKET_ORDER,
    CLOSED_BUCKET,
    DPD_BUCKETS,
    PAID_BUCKET,
    rolled_forward,
)
from dialer.reports.errors import ReportError, SnapshotRefused
from dialer.reports.models import (
    ZERO,
    AgentPerformance,
    Counts,
    DayFigures,
    Figures,
    GroupBy,
    Period,
    Report,
    RollCell,
    RollRates,
    Span,
    span_of,
)
from dialer.reports.tables import ReportSnapshot
from dialer.store.db import Store, error_reason
from dialer.store.models import Case, Debt, DebtStatus, Tenant, UtcDateTime

log = logging.getLogger(__name__)

TOTAL = "all"
NONE_KEY = "-"
NONE_LABEL = {
    GroupBy.CAMPAIGN: "(no campaign)",
    GroupBy.COLLECTOR: "(no collector)",
    GroupBy.TEAM: "(no team)",
}


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The first instant of `day` in `tz`, as aware UTC."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def window_of(tenant_id: int, span: Span, tz: tzinfo) -> q.Window:
    days = span.days()
    return q.Window(
        tenant_id=tenant_id,
        start=local_midnight(span.start, tz),
        end=local_midnight(span.end + timedelta(days=1), tz),
        first_day=span.start,
        last_day=span.end,
        day_bounds=tuple(local_midnight(d, tz) for d in days[1:]),
    )


def _key(value: Any) -> str:
    return NONE_KEY if value is None else str(value)


class _Tally:
    """Counts per group and for all, added to as each query's rows come in."""

    def __init__(self) -> None:
        self.groups: dict[str, Counts] = defaultdict(Counts)
        self.total = Counts(collected=ZERO)

    def add(self, group: str | None, counts: Counts) -> None:
        """Add to the total and, with a group, to that group."""
        self.total = self.total + counts
        if group is not None:
            self.groups[group] = self.groups[group] + counts


def _tenant_name(conn: Any, tenant_id: int) -> str:
    name = conn.execute(select(Tenant.name).where(Tenant.id == tenant_id)).scalar()
    if name is None:
        raise ReportError(f"no tenant with id {tenant_id}")
    return str(name)


def _portfolio_key(by: GroupBy, agent_id: str | None, team_id: int | None) -> str | None:
    """The row a snapshot figure goes to: campaigns hold no debts, so only the total."""
    if by is GroupBy.CAMPAIGN:
        return None
    return _key(agent_id if by is GroupBy.COLLECTOR else team_id)


def _roll(
    rows: list[q.RollRow], by: GroupBy, tally: _Tally, opening: date, closing: date
) -> RollRates:
    order = {b: i for i, b in enumerate(BUCKET_ORDER)}
    cells: dict[tuple[str, str], RollCell] = {}
    for r in rows:
        worse = rolled_forward(r.from_bucket, r.to_bucket)
        counts = Counts(owing_at_opening=r.debts, rolled_forward=r.debts if worse else 0)
        tally.add(_portfolio_key(by, r.agent_id, r.team_id), counts)
        was = cells.get((r.from_bucket, r.to_bucket))
        cells[(r.from_bucket, r.to_bucket)] = RollCell(
            r.from_bucket,
            r.to_bucket,
            r.debts + (was.debts if was else 0),
            r.balance + (was.balance if was else ZERO),
        )
    matrix = sorted(
        cells.values(), key=lambda c: (order.get(c.from_bucket, 99), order.get(c.to_bucket, 99))
    )
    return RollRates(opening, closing, BUCKET_ORDER, tuple(matrix))


def daily_report(
    store: Store,
    tenant_id: int,
    day: date,
    *,
    period: Period = Period.DAY,
    by: GroupBy = GroupBy.CAMPAIGN,
    tz: tzinfo = UTC,
    now: datetime | None = None,
) -> Report:
    """The tenant's figures for the day, ISO week or month holding `day` (local to `tz`),
    one row per campaign, collector or team, with agent performance and a per-day series."""
    span = span_of(day, period)
    w = window_of(tenant_id, span, tz)
    try:
        with store.begin() as conn:
            return _build(conn, w, span, by, tz, now or datetime.now(UTC))
    except SQLAlchemyError as exc:
        raise ReportError(
            f"report of tenant {tenant_id} for {span.start}..{span.end}: {error_reason(exc)}"
        ) from exc


def _build(conn: Any, w: q.Window, span: Span, by: GroupBy, tz: tzinfo, now: datetime) -> Report:
    tenant = _tenant_name(conn, w.tenant_id)
    currency = q.main_currency(conn, w.tenant_id)
    tally = _Tally()
    agents: dict[str, AgentPerformance] = {}
    notes: list[str] = []
    money_by_group = by is not GroupBy.CAMPAIGN

    def agent(agent_id: str) -> AgentPerformance:
        return agents.get(agent_id) or AgentPerformance(agent_id)

    for a in q.attempt_counts(conn, w, by):
        tally.add(
            _key(a.group),
            Counts(
                attempts=a.attempts,
                contacts=a.contacts,
                live_answers=a.live_answers,
                abandoned=a.abandoned,
                talk_seconds=a.talk_seconds,
                collected=ZERO if money_by_group else None,
            ),
        )
        if a.agent_id is not None and (a.calls or a.talk_seconds):
            agents[a.agent_id] = agent(a.agent_id).plus(calls=a.calls, talk_seconds=a.talk_seconds)
    for d in q.disposition_counts(conn, w, by):
        tally.add(
            _key(d.group),
            Counts(
                right_party_contacts=d.right_party_contacts,
                promises=d.promises,
                promised_amount=d.promised_amount,
                collected=ZERO if money_by_group else None,
            ),
        )
        if d.agent_id is not None and d.promises:
            agents[d.agent_id] = agent(d.agent_id).plus(
                promises=d.promises, promised_amount=d.promised_amount
            )
    for r in q.qa_by_agent(conn, w):
        if r.agent_id is not None:
            agents[r.agent_id] = agent(r.agent_id).plus(
                qa_score_sum=r.score_sum, qa_scored_calls=r.scored
            )
    for p in q.promises_due(conn, w, by):
        tally.add(
            _key(p.group),
            Counts(
                promises_kept=p.kept,
                promises_broken=p.broken,
                collected=ZERO if money_by_group else None,
            ),
        )
    collected_on: dict[date, Decimal] = defaultdict(Decimal)
    elsewhere: dict[str, Decimal] = defaultdict(Decimal)
    for pay in q.payments(conn, w):
        if pay.currency != currency:
            elsewhere[pay.currency] += pay.amount
            continue
        collected_on[pay.paid_on] += pay.amount
        group = None
        if money_by_group:
            group = _key(pay.agent_id if by is GroupBy.COLLECTOR else pay.team_id)
        tally.add(group, Counts(collected=pay.amount))
        if pay.agent_id is not None:
            agents[pay.agent_id] = agent(pay.agent_id).plus(collected=pay.amount)
    for cur, amount in sorted(elsewhere.items()):
        notes.append(
            f"payments of {amount.quantize(Decimal('0.01'))} {cur} are left out of the money "
            f"figures, which are in {currency}"
        )
    roll = _snapshot_figures(conn, w, span, by, tally, currency, notes)
    days = _days(conn, w, span, tally.total, collected_on)
    labels = _labels(conn, w.tenant_id, by)
    rows = tuple(
        Figures(key, labels.get(key, NONE_LABEL[by] if key == NONE_KEY else key), counts)
        for key, counts in sorted(tally.groups.items(), key=lambda kv: _sort_key(kv[0], labels))
    )
    return Report(
        tenant_id=w.tenant_id,
        tenant=tenant,
        span=span,
        by=by,
        timezone=str(tz),
        currency=currency,
        totals=Figures(TOTAL, "All", tally.total),
        rows=rows,
        agents=tuple(agents[k] for k in sorted(agents)),
        days=days,
        roll=roll,
        generated_at=now,
        notes=tuple(notes),
    )


def _sort_key(key: str, labels: dict[str, str]) -> tuple[int, str]:
    return (1 if key == NONE_KEY else 0, labels.get(key, key))


def _labels(conn: Any, tenant_id: int, by: GroupBy) -> dict[str, str]:
    if by is GroupBy.CAMPAIGN:
        return q.campaign_names(conn, tenant_id)
    if by is GroupBy.TEAM:
        return q.team_names(conn, tenant_id)
    return {}


def _snapshot_figures(
    conn: Any,
    w: q.Window,
    span: Span,
    by: GroupBy,
    tally: _Tally,
    currency: str | None,
    notes: list[str],
) -> RollRates | None:
    """Assigned, recovered and roll rates from the opening and closing snapshots."""
    if not q.snapshot_taken(conn, w.tenant_id, span.opening):
        notes.append(
            f"no snapshot of {span.opening} (the day before the period): assigned, recovery "
            f"and roll rates need `dialer report snapshot --date {span.opening}` taken that night"
        )
        return None
    for p in q.opening_portfolio(conn, w, span.opening):
        if p.currency != currency:
            continue
        tally.add(
            _portfolio_key(by, p.agent_id, p.team_id),
            Counts(assigned=p.assigned, recovered=p.recovered),
        )
    if not q.snapshot_taken(conn, w.tenant_id, span.end):
        notes.append(f"no snapshot of {span.end} (the period's last day) yet: roll rates need it")
        return None
    rows = q.roll_matrix(conn, w.tenant_id, span.opening, span.end, currency)
    return _roll(rows, by, tally, span.opening, span.end)


def _days(
    conn: Any, w: q.Window, span: Span, total: Counts, collected_on: dict[date, Decimal]
) -> tuple[DayFigures, ...]:
    days = span.days()
    if len(days) == 1:
        return (
            DayFigures(
                days[0], total.attempts, total.contacts, total.promises, collected_on[days[0]]
            ),
        )
    counted = {r.day_index: r for r in q.day_counts(conn, w)}
    out = []
    for i, d in enumerate(days):
        r = counted.get(i)
        out.append(
            DayFigures(
                d,
                r.attempts if r else 0,
                r.contacts if r else 0,
                r.promises if r else 0,
                collected_on.get(d, ZERO),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class SnapshotResult:
    tenant_id: int
    day: date
    debts: int
    owing: int
    replaced: int  # rows of an earlier snapshot of the same day, now replaced


def _bucket_sql() -> Any:
    d = Debt
    dpd = [(d.days_past_due <= high, name) for name, _low, high in DPD_BUCKETS if high is not None]
    return case(
        (d.status == DebtStatus.CLOSED.value, CLOSED_BUCKET),
        (d.status == DebtStatus.SETTLED.value, PAID_BUCKET),
        (d.balance <= 0, PAID_BUCKET),
        *dpd,
        else_=DPD_BUCKETS[-1][0],
    )


def take_snapshot(
    store: Store, tenant_id: int, day: date, *, today: date, now: datetime
) -> SnapshotResult:
    """Record every debt of the tenant as it stands now under `day` (the end of that day).

    `day` is today or yesterday (`today` local to the call center): the store keeps only
    current balances, so an older day's state cannot be known. Taking a day twice replaces
    it: the nightly job may be re-run."""
    if day > today:
        raise SnapshotRefused(f"--date {day}: a snapshot of a day to come cannot be taken")
    if day < today - timedelta(days=1):
        raise SnapshotRefused(
            f"--date {day}: only today's or yesterday's snapshot can be taken (today is "
            f"{today}); the store keeps current balances, not those of {day}"
        )
    d, s = Debt, ReportSnapshot
    rows = select(
        literal(day, Date()),
        d.id,
        d.tenant_id,
        Case.id,
        d.balance,
        d.currency,
        d.days_past_due,
        _bucket_sql(),
        d.status,
        Case.agent_id,
        Case.team_id,
        literal(now, UtcDateTime()),
    ).select_from(d.__table__.outerjoin(Case, Case.debtor_id == d.debtor_id))
    rows = rows.where(d.tenant_id == tenant_id)
    columns = [
        s.snapshot_date,
        s.debt_id,
        s.tenant_id,
        s.case_id,
        s.balance,
        s.currency,
        s.days_past_due,
        s.bucket,
        s.debt_status,
        s.agent_id,
        s.team_id,
        s.taken_at,
    ]
    try:
        with store.begin() as conn:
            _tenant_name(conn, tenant_id)
            replaced = conn.execute(
                delete(s).where(s.tenant_id == tenant_id, s.snapshot_date == day)
            ).rowcount
            conn.execute(insert(s).from_select([c.key for c in columns], rows))
            counts = conn.execute(
                select(func.count(), q.count_if(s.bucket.not_in(q.NOT_OWING))).where(
                    s.tenant_id == tenant_id, s.snapshot_date == day
                )
            ).one()
    except SQLAlchemyError as exc:
        raise ReportError(f"snapshot of tenant {tenant_id} for {day}: {error_reason(exc)}") from exc
    result = SnapshotResult(tenant_id, day, int(counts[0]), int(counts[1]), int(replaced or 0))
    log.info(
        "= snapshot %s of tenant %s: %s debts, %s owing (%s replaced)",
        day,
        tenant_id,
        result.debts,
        result.owing,
        result.replaced,
    )
    return result
