"""A slow, obviously-correct restatement of the rules, to check the guard against.

It keeps the plain list of attempts, counts them afresh for every question, and finds the next
allowed time by trying every quarter hour. Nothing here shares code with the guard's engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from compliance_guard.models import AttemptRequest
from compliance_guard.rules import RuleSet, Scope

QUARTER = timedelta(minutes=15)


@dataclass(frozen=True)
class PastEvent:
    at: datetime
    person: str
    debts: tuple[str, ...]
    phone: str
    phone_type: str
    campaign: str
    inbound: bool
    outcome: str | None  # None: reserved, outcome not known yet


def local_date(t: datetime, zone: str) -> date:
    return t.astimezone(ZoneInfo(zone)).date()


def window_ok(ruleset: RuleSet, t: datetime, zones: tuple[str, ...]) -> list[str]:
    """Ids of window rules closed at t in some zone."""
    closed = []
    ring = timedelta(seconds=ruleset.ring_seconds)
    for rule in ruleset.windows:
        for z in zones:
            local = t.astimezone(ZoneInfo(z))
            ends = (t + ring).astimezone(ZoneInfo(z)).replace(tzinfo=None)
            minute = local.hour * 60 + local.minute
            midnight = datetime(local.year, local.month, local.day)
            if not any(
                s.start <= minute < s.end and ends <= midnight + timedelta(minutes=s.end)
                for s in rule.hours[local.weekday()]
            ):
                closed.append(rule.id)
                break
    return closed


def in_window(e: datetime, t: datetime, days: int, calendar: bool, zones: tuple[str, ...]) -> bool:
    if e > t:
        return False
    if not calendar:
        return t - e < timedelta(days=days)
    # counted if, in any of the debtor's zones, it happened within the last `days` local dates
    return any(local_date(e, z) >= local_date(t, z) - timedelta(days=days - 1) for z in zones)


def denied_by(
    ruleset: RuleSet, history: list[PastEvent], req: AttemptRequest, t: datetime
) -> list[str]:
    zones = req.time_zones
    reasons = window_ok(ruleset, t, zones)
    for cap in ruleset.caps:
        if cap.phone_types and req.phone_type not in cap.phone_types:
            continue
        counts = {o.value for o in cap.counts}
        subjects: list[str] = (
            list(req.debt_ids) if cap.scope in (Scope.PERSON_DEBT, Scope.DEBT) else ["-"]
        )
        for debt in subjects:
            n = 0
            for e in history:
                if e.inbound or (e.outcome is not None and e.outcome not in counts):
                    continue
                if cap.phone_types and e.phone_type not in {p.value for p in cap.phone_types}:
                    continue
                same = {
                    Scope.PERSON: e.person == req.person_id,
                    Scope.PERSON_DEBT: e.person == req.person_id and debt in e.debts,
                    Scope.DEBT: debt in e.debts,
                    Scope.PHONE: e.phone == req.phone,
                    Scope.CAMPAIGN: e.campaign == req.campaign_id,
                }[cap.scope]
                if same and in_window(e.at, t, cap.window_days, cap.calendar_days, zones):
                    n += 1
            if n >= cap.limit:
                reasons.append(cap.id)
    for conv in ruleset.conversations:
        for debt in req.debt_ids:
            if any(
                (e.inbound or e.outcome == "conversation")
                and e.person == req.person_id
                and debt in e.debts
                and in_window(e.at, t, conv.days, True, zones)
                for e in history
            ):
                reasons.append(conv.id)
    return sorted(reasons)


def next_allowed(
    ruleset: RuleSet,
    history: list[PastEvent],
    req: AttemptRequest,
    t: datetime,
    horizon: timedelta,
) -> datetime | None:
    at = t
    while at <= t + horizon:
        if not denied_by(ruleset, history, req, at):
            return at
        at += QUARTER
    return None
