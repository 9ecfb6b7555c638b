"""A report's typed figures: additive counts per group, the rates made from them, the period."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from dialer.reports.definitions import BY_KEY, rolled_forward
from dialer.reports.errors import ReportError

ZERO = Decimal(0)
CENT = Decimal("0.01")


class Period(enum.StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO week, Monday to Sunday
    MONTH = "month"  # calendar month


class GroupBy(enum.StrEnum):
    CAMPAIGN = "campaign"
    COLLECTOR = "collector"  # the case's collector now (cases.agent_id)
    TEAM = "team"  # the case's team now (cases.team_id)


@dataclass(frozen=True)
class Span:
    """A report's days, first to last inclusive, local to the report's time zone."""

    period: Period
    start: date
    end: date

    @property
    def opening(self) -> date:
        """The snapshot that tells what was owed when the period began: the day before."""
        return self.start - timedelta(days=1)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]


# Far wider than any call history; the edges keep the day before and the month's end
# (and a time zone's shift) inside what a date can hold.
FIRST_DAY = date(1900, 1, 2)
LAST_DAY = date(9999, 11, 30)


def span_of(day: date, period: Period) -> Span:
    """The day, ISO week or calendar month that holds `day`."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ReportError(f"day {day.isoformat()}: outside {FIRST_DAY} to {LAST_DAY}")
    if period is Period.DAY:
        return Span(period, day, day)
    if period is Period.WEEK:
        start = day - timedelta(days=day.weekday())
        return Span(period, start, start + timedelta(days=6))
    start = day.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return Span(period, start, following - timedelta(days=1))


def ratio(numerator: float | Decimal, denominator: float | Decimal | None) -> float | None:
    """A rate as a fraction; None when there is nothing to be a share of."""
    if denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)


def money(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount.quantize(CENT))


@dataclass(frozen=True)
class Counts:
    """The additive counts of one group (or of all): rates are made from these, never summed.

    Money and portfolio counts are None where they cannot be attributed to the group (a
    payment has no campaign) or are unknown (no opening snapshot)."""

    attempts: int = 0
    contacts: int = 0
    right_party_contacts: int = 0
    promises: int = 0
    promised_amount: Decimal = ZERO
    live_answers: int = 0
    abandoned: int = 0
    talk_seconds: float = 0.0
    promises_kept: int = 0
    promises_broken: int = 0
    collected: Decimal | None = None
    assigned: Decimal | None = None
    recovered: Decimal | None = None
    owing_at_opening: int | None = None
    rolled_forward: int | None = None

    def __add__(self, other: Counts) -> Counts:
        values: dict[str, Any] = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            values[f.name] = b if a is None else a if b is None else a + b
        return Counts(**values)


@dataclass(frozen=True)
class Figures:
    """One row of the report: a group's counts and the rates they make."""

    key: str  # campaign id, collector's agent id, team id; "" for the totals
    label: str
    counts: Counts

    @property
    def contact_rate(self) -> float | None:
        return ratio(self.counts.contacts, self.counts.attempts)

    @property
    def right_party_contact_rate(self) -> float | None:
        return ratio(self.counts.right_party_contacts, self.counts.attempts)

    @property
    def promise_rate(self) -> float | None:
        return ratio(self.counts.promises, self.counts.right_party_contacts)

    @property
    def promises_due(self) -> int:
        return self.counts.promises_kept + self.counts.promises_broken

    @property
    def kept_promise_rate(self) -> float | None:
        return ratio(self.counts.promises_kept, self.promises_due)

    @property
    def recovery_rate(self) -> float | None:
        c = self.counts
        return None if c.recovered is None else ratio(c.recovered, c.assigned)

    @property
    def abandon_rate(self) -> float | None:
        return ratio(self.counts.abandoned, self.counts.live_answers)

    @property
    def roll_forward_rate(self) -> float | None:
        c = self.counts
        return None if c.rolled_forward is None else ratio(c.rolled_forward, c.owing_at_opening)

    def as_json(self) -> dict[str, Any]:
        c = self.counts
        return {
            "key": self.key,
            "label": self.label,
            "attempts": c.attempts,
            "contacts": c.contacts,
            "contact_rate": self.contact_rate,
            "right_party_contacts": c.right_party_contacts,
            "right_party_contact_rate": self.right_party_contact_rate,
            "promises": c.promises,
            "promise_rate": self.promise_rate,
            "promised_amount": money(c.promised_amount),
            "promises_due": self.promises_due,
            "promises_kept": c.promises_kept,
            "kept_promise_rate": self.kept_promise_rate,
            "collected": money(c.collected),
            "assigned": money(c.assigned),
            "recovered": money(c.recovered),
            "recovery_rate": self.recovery_rate,
            "live_answers": c.live_answers,
            "abandoned": c.abandoned,
            "abandon_rate": self.abandon_rate,
            "talk_seconds": round(c.talk_seconds, 1),
            "owing_at_opening": c.owing_at_opening,
            "rolled_forward": c.rolled_forward,
            "roll_forward_rate": self.roll_forward_rate,
        }


@dataclass(frozen=True)
class AgentPerformance:
    """One agent's calls (attempts connected to them), promises, money and QA."""

    agent_id: str
    calls: int = 0
    talk_seconds: float = 0.0
    promises: int = 0
    promised_amount: Decimal = ZERO
    collected: Decimal = ZERO  # payments on the cases they are the collector of
    qa_score_sum: float = 0.0
    qa_scored_calls: int = 0

    @property
    def qa_score(self) -> float | None:
        return ratio(self.qa_score_sum, self.qa_scored_calls)

    def plus(self, **more: Any) -> AgentPerformance:
        return replace(self, **{k: getattr(self, k) + v for k, v in more.items()})

    def as_json(self) -> dict[str, Any]:
        score = self.qa_score
        return {
            "agent_id": self.agent_id,
            "calls": self.calls,
            "talk_seconds": round(self.talk_seconds, 1),
            "promises": self.promises,
            "promised_amount": money(self.promised_amount),
            "collected": money(self.collected),
            "qa_score": None if score is None else round(score, 2),
            "qa_scored_calls": self.qa_scored_calls,
        }


@dataclass(frozen=True)
class DayFigures:
    """One day of the period, for the chart over time."""

    day: date
    attempts: int
    contacts: int
    promises: int
    collected: Decimal

    def as_json(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "attempts": self.attempts,
            "contacts": self.contacts,
            "contact_rate": ratio(self.contacts, self.attempts),
            "promises": self.promises,
            "collected": money(self.collected),
        }


@dataclass(frozen=True)
class RollCell:
    from_bucket: str
    to_bucket: str
    debts: int
    balance: Decimal  # owed at the opening


@dataclass(frozen=True)
class RollRates:
    """Debts' days-past-due buckets at the opening snapshot against the closing one."""

    opening: date
    closing: date
    buckets: tuple[str, ...]
    matrix: tuple[RollCell, ...]

    def roll_forward(self) -> dict[str, float | None]:
        """Per opening bucket: the share of its debts now in a worse days-past-due bucket."""
        out: dict[str, float | None] = {}
        for bucket in self.buckets:
            cells = [c for c in self.matrix if c.from_bucket == bucket]
            if not cells:
                continue
            worse = sum(c.debts for c in cells if rolled_forward(c.from_bucket, c.to_bucket))
            out[bucket] = ratio(worse, sum(c.debts for c in cells))
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "opening": self.opening.isoformat(),
            "closing": self.closing.isoformat(),
            "buckets": list(self.buckets),
            "matrix": [
                {
                    "from": c.from_bucket,
                    "to": c.to_bucket,
                    "debts": c.debts,
                    "balance": money(c.balance),
                }
                for c in self.matrix
            ],
            "roll_forward": self.roll_forward(),
        }


@dataclass(frozen=True)
class Report:
    """A tenant's collection figures over one period, grouped one way."""

    tenant_id: int
    tenant: str
    span: Span
    by: GroupBy
    timezone: str
    currency: str | None
    totals: Figures
    rows: tuple[Figures, ...]
    agents: tuple[AgentPerformance, ...]
    days: tuple[DayFigures, ...]
    roll: RollRates | None
    generated_at: datetime
    notes: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "tenant": self.tenant,
            "period": self.span.period.value,
            "start": self.span.start.isoformat(),
            "end": self.span.end.isoformat(),
            "by": self.by.value,
            "timezone": self.timezone,
            "currency": self.currency,
            "generated_at": self.generated_at.isoformat(timespec="seconds"),
            "totals": self.totals.as_json(),
            "rows": [r.as_json() for r in self.rows],
            "agents": [a.as_json() for a in self.agents],
            "days": [d.as_json() for d in self.days],
            "roll": None if self.roll is None else self.roll.as_json(),
            "notes": list(self.notes),
            "definitions": {k: d.one_line() for k, d in BY_KEY.items()},
        }
