"""The pure decision core: a request and the clock in, ledger checks out, observations in, a Decision out."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from compliance_guard.errors import InvalidRequest
from compliance_guard.models import AttemptRequest, Channel, Decision, Flag, PhoneType, Reason
from compliance_guard.rules import (
    CapRule,
    ConversationRule,
    FlagRule,
    RuleSet,
    Scope,
    ThirdPartyPolicy,
    UnknownZonePolicy,
    WindowRule,
)
from compliance_guard.store import FlagCheck, LedgerCheck, NewReservation, Observation, ReserveCall
from compliance_guard.zones import ZoneResolution

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
DAY_US = 86_400_000_000
UTC_ZONE = ZoneInfo("UTC")
NO_COUNTS: frozenset[str] = frozenset()
SEARCH_DAYS = 40  # how far ahead next_allowed_at looks for an open window


def to_us(dt: datetime) -> int:
    return (dt - EPOCH) // ONE_US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def first_instant_at(d: date, minute: int, tz: ZoneInfo) -> datetime:
    """First instant (UTC) whose wall clock in `tz` reads at least `minute` past midnight of `d`.

    Computed at the moment of use from the zone rules, never from a stored offset. A wall time
    skipped by a DST change (02:30 on spring-forward day) maps to the change itself.
    """
    wall = datetime.combine(d, dtime(minute // 60, minute % 60))
    at = wall.replace(tzinfo=tz).astimezone(UTC)
    if at.astimezone(tz).replace(tzinfo=None) == wall:
        return at  # fold=0: the first of two readings when the hour repeats
    lo = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)  # reads before `wall`
    while at - lo > timedelta(minutes=1):  # clocks change on whole minutes
        mid = lo + (at - lo) // 2
        mid = mid - timedelta(seconds=mid.second, microseconds=mid.microsecond)
        if mid <= lo:
            break
        if mid.astimezone(tz).replace(tzinfo=None) >= wall:
            at = mid
        else:
            lo = mid
    return at


def start_of_day(d: date, tz: ZoneInfo) -> datetime:
    """First instant whose local date in `tz` is `d`, in UTC (computed now, never stored)."""
    return first_instant_at(d, 0, tz)


def window_start(now: datetime, zones: Sequence[ZoneInfo], days: int, calendar: bool) -> datetime:
    """Start of the look-back window; with several zones the earliest start (longest look-back)."""
    if not calendar:
        return now - timedelta(days=days) + ONE_US
    return min(start_of_day(now.astimezone(z).date() - timedelta(days=days - 1), z) for z in zones)


def leaves_window(
    entry: datetime, zones: Sequence[ZoneInfo], days: int, calendar: bool
) -> datetime:
    """When an entry stops counting in every zone: the inverse of `window_start`."""
    if not calendar:
        return entry + timedelta(days=days)
    return max(start_of_day(entry.astimezone(z).date() + timedelta(days=days), z) for z in zones)


def ledger_key(tenant: str, *parts: str) -> str:
    return "|".join((tenant, *parts))


def conversation_key(tenant: str, person_id: str, debt_id: str) -> str:
    return ledger_key(tenant, "conv", person_id, debt_id)


def flag_target(tenant: str, scope: str, value: str) -> str:
    return ledger_key(tenant, "flag", scope, value)


@dataclass(frozen=True, slots=True)
class CapPlan:
    """One cap, prepared for a channel and phone type: its ledger-key prefix and what it counts."""

    rule: CapRule
    owner_shared: bool
    scope: str
    key_middle: str  # "cap|<id>|<scope>|"
    counts: frozenset[str]
    info_days: int
    calendar: bool


# A day's spans of one window in one zone: (start minute, end minute, naive local end).
DaySpans = tuple[tuple[int, int, datetime], ...]


@dataclass(frozen=True, slots=True)
class Compiled:
    """A rule set prepared for one channel and phone type (built once, reused per request)."""

    windows: tuple[WindowRule, ...]
    ring: timedelta
    blocking: frozenset[str]
    caps: tuple[CapPlan, ...]
    conversations: tuple[ConversationRule, ...]
    flag_rules: dict[str, FlagRule]
    label: str  # name@version
    digest: str


class EngineCache:
    """Derived data owned by one guard: holiday calendars, compiled rules, day starts, day spans.

    Everything here is a pure function of its key, so caching never changes an answer. Every
    table is bounded: it is emptied when it reaches `max_entries`.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self._cals: dict[tuple[str, str | None], Any] = {}
        self._compiled: dict[tuple[str, Channel, PhoneType], Compiled] = {}
        self._instants: dict[tuple[date, int, str], datetime] = {}
        self._zones: dict[tuple[str, ...], tuple[ZoneInfo, ...]] = {}
        # (rule set digest, channel, window index, zone, local date) -> that day's spans.
        self._days: dict[tuple[str, str, int, str, date], DaySpans] = {}
        self._templates: dict[tuple[Any, ...], Template] = {}
        self._max = max_entries

    def is_holiday(self, rule: WindowRule, d: date) -> bool:
        if rule.holiday_country is None:
            return False
        key = (rule.holiday_country, rule.holiday_subdiv)
        cal = self._cals.get(key)
        if cal is None:
            cal = holidays_lib.country_holidays(rule.holiday_country, subdiv=rule.holiday_subdiv)
            self._cals[key] = cal
        return d in cal

    def day_start(self, d: date, tz: ZoneInfo) -> datetime:
        return self.first_instant(d, 0, tz)

    def first_instant(self, d: date, minute: int, tz: ZoneInfo) -> datetime:
        key = (d, minute, tz.key)
        hit = self._instants.get(key)
        if hit is None:
            if len(self._instants) >= self._max:
                self._instants.clear()
            hit = self._instants[key] = first_instant_at(d, minute, tz)
        return hit

    def zone_infos(self, names: tuple[str, ...]) -> tuple[ZoneInfo, ...]:
        hit = self._zones.get(names)
        if hit is None:
            if len(self._zones) >= self._max:
                self._zones.clear()
            hit = self._zones[names] = tuple(ZoneInfo(z) for z in names)
        return hit

    def day_spans(
        self, comp: Compiled, channel: Channel, index: int, zone: ZoneInfo, d: date
    ) -> DaySpans:
        """The spans window `index` opens on local day `d` (holidays included), with end walls."""
        key = (comp.digest, channel._value_, index, zone.key, d)
        hit = self._days.get(key)
        if hit is None:
            rule = comp.windows[index]
            spans = rule.holiday_hours if self.is_holiday(rule, d) else rule.hours[d.weekday()]
            midnight = datetime.combine(d, dtime(0))
            hit = tuple((s.start, s.end, midnight + timedelta(minutes=s.end)) for s in spans)
            if len(self._days) >= self._max:
                self._days.clear()
            self._days[key] = hit
        return hit

    def template(self, ruleset: RuleSet, request: AttemptRequest) -> Template:
        """The clock-free part of the plan for this request (keys, flag targets, explanations)."""
        r = request
        key = (
            ruleset.digest,
            r.channel._value_,  # plain str: hashing an enum member calls Python code
            r.phone_type._value_,
            r.tenant,
            r.person_id,
            tuple(r.debt_ids),
            r.phone,
            r.campaign_id,
            r.third_party,
        )
        hit = self._templates.get(key)
        if hit is None:
            comp = self.compiled(ruleset, r.channel, r.phone_type)
            hit = _template(ruleset, comp, r)
            if len(self._templates) >= self._max:
                self._templates.clear()
            self._templates[key] = hit
        return hit

    def compiled(self, ruleset: RuleSet, channel: Channel, phone_type: PhoneType) -> Compiled:
        key = (ruleset.digest, channel, phone_type)
        hit = self._compiled.get(key)
        if hit is None:
            caps = tuple(
                CapPlan(
                    cap,
                    cap.shared,
                    cap.scope.value,
                    f"cap|{cap.id}|{cap.scope.value}|",
                    frozenset(o.value for o in cap.counts),
                    cap.window_days,
                    cap.calendar_days,
                )
                for cap in ruleset.caps
                if channel in cap.channels
                and (not cap.phone_types or phone_type in cap.phone_types)
            )
            hit = Compiled(
                windows=tuple(w for w in ruleset.windows if channel in w.channels),
                ring=timedelta(seconds=ruleset.ring_seconds if channel is Channel.CALL else 0),
                blocking=frozenset(f.flag.value for f in ruleset.flags if channel in f.channels),
                caps=caps,
                conversations=tuple(c for c in ruleset.conversations if channel in c.channels),
                flag_rules={f.flag.value: f for f in ruleset.flags},
                label=ruleset.label,
                digest=ruleset.digest,
            )
            self._compiled[key] = hit
        return hit


def _inside(local: datetime, end_local: datetime, spans: Sequence[Any]) -> bool:
    minute = local.hour * 60 + local.minute
    midnight = datetime.combine(local.date(), dtime(0))
    end_wall = end_local.replace(tzinfo=None)
    for s in spans:
        if s.start <= minute < s.end and end_wall <= midnight + timedelta(minutes=s.end):
            return True
    return False


def window_open(
    rule: WindowRule, t: datetime, zone: ZoneInfo, ring: timedelta, cals: EngineCache
) -> bool:
    """Inside the rule's hours in `zone`, with time left to ring before the window closes."""
    local = t.astimezone(zone)
    d = local.date()
    spans = rule.holiday_hours if cals.is_holiday(rule, d) else rule.hours[d.weekday()]
    return _inside(local, (t + ring).astimezone(zone), spans)


def preference_open(request: AttemptRequest, t: datetime, zone: ZoneInfo, ring: timedelta) -> bool:
    prefs = request.preferences
    local = t.astimezone(zone)
    if local.weekday() in prefs.no_weekdays:
        return False
    if prefs.not_before is not None and local.time().replace(tzinfo=None) < prefs.not_before:
        return False
    if prefs.not_after is not None:
        end = (t + ring).astimezone(zone).replace(tzinfo=None)
        if end > datetime.combine(local.date(), prefs.not_after):
            return False
    return True


class CheckInfo(NamedTuple):
    """Why a ledger check exists: the rule behind it, to explain and to compute release times."""

    rule_id: str
    citation: str
    message: str
    kind: str  # "cap" or "conversation"
    days: int
    calendar: bool
    subject: str  # debt id, phone or campaign the ledger is about (for the message)


class Plan(NamedTuple):
    """Everything decided before the ledger is read, and the ledger checks to run atomically."""

    request: AttemptRequest
    now: datetime
    ruleset: RuleSet
    zones: tuple[str, ...]  # the zones every window is evaluated in
    static_reasons: tuple[Reason, ...]  # decided without the ledger
    final: bool  # a static reason with no foreseeable end (next_allowed_at is None)
    checks: tuple[LedgerCheck, ...]
    infos: tuple[CheckInfo, ...]
    flag_checks: tuple[FlagCheck, ...]
    conversation_keys: tuple[str, ...]
    compiled: Compiled
    now_us: int

    def call(self, reservation_id: str | None) -> ReserveCall:
        """The atomic step to ask of the backend; nothing is written when statically denied."""
        reservation = None
        if reservation_id is not None and not self.static_reasons:
            reservation = NewReservation(reservation_id, self.now_us, self.conversation_keys)
        return ReserveCall(self.checks, self.flag_checks, reservation)


def validate(request: AttemptRequest, now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidRequest("now: must be timezone-aware")
    for name in ("tenant", "person_id", "phone", "campaign_id"):
        value = getattr(request, name)
        if not isinstance(value, str) or not value or "|" in value:
            raise InvalidRequest(f"{name}: must be a non-empty string without '|', got {value!r}")
    if not request.debt_ids:
        raise InvalidRequest("debt_ids: at least one debt the attempt is about")
    for d in request.debt_ids:
        if not d or "|" in d:
            raise InvalidRequest(f"debt_ids: bad debt id {d!r}")
    if request.facts_as_of is not None and request.facts_as_of.tzinfo is None:
        raise InvalidRequest("facts_as_of: must be timezone-aware")


def effective_zones(ruleset: RuleSet, res: ZoneResolution) -> tuple[tuple[str, ...], list[Reason]]:
    if res.zones and not res.unknown:
        return res.zones, []  # the common case
    reasons = [
        Reason(
            "zone-unknown",
            f"time zone {z!r} is not a known IANA zone; denied rather than guessed",
        )
        for z in res.unknown
    ]
    zones = res.zones
    if not zones:
        if ruleset.unknown_zone is UnknownZonePolicy.FALLBACK:
            zones = ruleset.fallback_zones
        else:
            reasons.append(
                Reason(
                    "zone-undetermined",
                    "the debtor's time zone cannot be determined (no explicit zone, address or "
                    "geographic number); denied by the rule set's fail-closed default",
                )
            )
    return zones, reasons


class _LedgerSpec(NamedTuple):
    """A ledger check without its window start (which depends on the clock)."""

    key: str
    limit: int
    days: int
    calendar: bool
    record: bool
    counts: frozenset[str]


class Template(NamedTuple):
    """The clock-free part of a plan: ledger keys, flag targets, explanations.

    A pure function of the compiled rules and the request's identity fields (tenant, person,
    debts, phone, campaign, channel, phone type, third party), so cached under exactly those.
    """

    compiled: Compiled
    third_party_reason: Reason | None  # the rule set never allows third parties
    flag_checks: tuple[FlagCheck, ...]
    ledgers: tuple[_LedgerSpec, ...]
    infos: tuple[CheckInfo, ...]
    conversation_keys: tuple[str, ...]  # the ledgers a conversation on this attempt feeds


def _template(ruleset: RuleSet, comp: Compiled, request: AttemptRequest) -> Template:
    tenant, person = request.tenant, request.person_id
    third_party_reason = None
    required: frozenset[str] = frozenset()
    if request.third_party:
        if ruleset.third_party is ThirdPartyPolicy.NEVER:
            third_party_reason = Reason(
                "third-party",
                "this rule set never allows calling third parties",
                ruleset.third_party_citation,
            )
        elif ruleset.third_party is ThirdPartyPolicy.WHEN_DEBTOR_UNREACHABLE:
            required = frozenset({Flag.DEBTOR_UNREACHABLE.value})
    blocking = comp.blocking
    flag_checks = [FlagCheck(flag_target(tenant, "person", person), blocking, required)]
    flag_checks += [FlagCheck(flag_target(tenant, "debt", d), blocking) for d in request.debt_ids]
    flag_checks.append(FlagCheck(flag_target(tenant, "phone", request.phone), blocking))
    ledgers: list[_LedgerSpec] = []
    infos: list[CheckInfo] = []
    for cp in comp.caps:
        prefix = f"{'*' if cp.owner_shared else tenant}|{cp.key_middle}"
        cap = cp.rule
        for subject, value in _scope_values(cap.scope, request):
            ledgers.append(
                _LedgerSpec(prefix + value, cap.limit, cp.info_days, cp.calendar, True, cp.counts)
            )
            infos.append(
                CheckInfo(
                    cap.id, cap.citation, cap.message, "cap", cp.info_days, cp.calendar, subject
                )
            )
    conv_keys = tuple(conversation_key(tenant, person, d) for d in request.debt_ids)
    for conv in comp.conversations:
        for debt, key in zip(request.debt_ids, conv_keys, strict=True):
            ledgers.append(_LedgerSpec(key, 1, conv.days, True, False, NO_COUNTS))
            infos.append(
                CheckInfo(
                    conv.id, conv.citation, conv.message, "conversation", conv.days, True, debt
                )
            )
    return Template(
        comp,
        third_party_reason,
        tuple(flag_checks),
        tuple(ledgers),
        tuple(infos),
        conv_keys if request.channel is Channel.CALL else (),
    )


def make_plan(
    ruleset: RuleSet,
    request: AttemptRequest,
    now: datetime,
    resolution: ZoneResolution,
    cals: EngineCache,
    max_facts_age: timedelta | None,
) -> Plan:
    """Everything decidable without the ledger, and the ledger checks to run atomically."""
    validate(request, now)
    now = now.astimezone(UTC)
    now_us = to_us(now)
    tpl = cals.template(ruleset, request)
    comp = tpl.compiled
    zone_names, static = effective_zones(ruleset, resolution)
    final = bool(static)
    tz = cals.zone_infos(zone_names)
    if max_facts_age is not None and request.facts_as_of is not None:
        age = now - request.facts_as_of
        if age > max_facts_age:
            static.append(
                Reason(
                    "stale-data",
                    f"the debtor's record was read {age} ago (limit {max_facts_age}); "
                    "reload it before dialling",
                )
            )
            final = True
    if tpl.third_party_reason is not None:
        static.append(tpl.third_party_reason)
        final = True

    # Local readings of the dial moment, computed now from the zone rules (DST included).
    if tz:
        locals_now = [now.astimezone(z) for z in tz]
        ch = request.channel
        end_t = now + comp.ring
        ends: list[datetime | None] = [None] * len(tz)  # local wall of the ring's end, lazily
        for wi, rule in enumerate(comp.windows):
            closed = []
            for zi, z in enumerate(tz):
                local = locals_now[zi]
                minute = local.hour * 60 + local.minute
                inside = False
                for start, stop, end_wall in cals.day_spans(comp, ch, wi, z, local.date()):
                    if start <= minute < stop:
                        end = ends[zi]
                        if end is None:
                            end = ends[zi] = end_t.astimezone(z).replace(tzinfo=None)
                        if end <= end_wall:
                            inside = True
                            break
                if not inside:
                    closed.append((z, local))
            if closed:
                where = ", ".join(f"{local:%a %H:%M} in {z.key}" for z, local in closed)
                static.append(Reason(rule.id, f"{rule.message} ({where})", rule.citation))
        prefs = request.preferences
        if prefs.not_before or prefs.not_after or prefs.no_weekdays:
            closed_p = [z for z in tz if not preference_open(request, now, z, comp.ring)]
            if closed_p:
                where = ", ".join(f"{now.astimezone(z):%a %H:%M} in {z.key}" for z in closed_p)
                static.append(
                    Reason("debtor-preference", f"outside the times the debtor accepts ({where})")
                )
    else:
        # Without a zone the attempt is already denied; ledgers are still named (history
        # import), counted from UTC days.
        tz = (UTC_ZONE,)
        locals_now = [now]
    starts: dict[int, int] = {}  # calendar look-back in days -> window start (us)
    checks = []
    for spec in tpl.ledgers:
        days = spec.days
        if not spec.calendar:
            start = now_us - days * DAY_US + 1
        else:
            hit = starts.get(days)
            if hit is None:
                back = timedelta(days=days - 1)
                if len(tz) == 1:
                    first = cals.day_start(locals_now[0].date() - back, tz[0])
                else:
                    first = min(
                        cals.day_start(local.date() - back, z)
                        for local, z in zip(locals_now, tz, strict=True)
                    )
                hit = starts[days] = to_us(first)
            start = hit
        checks.append(LedgerCheck(spec.key, spec.limit, start, spec.record, spec.counts))
    return Plan(
        request,
        now,
        ruleset,
        zone_names,
        tuple(static),
        final,
        tuple(checks),
        tpl.infos,
        tpl.flag_checks,
        tpl.conversation_keys,
        comp,
        now_us,
    )


def _scope_values(scope: Scope, request: AttemptRequest) -> list[tuple[str, str]]:
    if scope is Scope.PERSON:
        return [("person", request.person_id)]
    if scope is Scope.PERSON_DEBT:
        return [(f"debt {d}", f"{request.person_id}/{d}") for d in request.debt_ids]
    if scope is Scope.DEBT:
        return [(f"debt {d}", d) for d in request.debt_ids]
    if scope is Scope.PHONE:
        return [("phone", request.phone)]
    return [(f"campaign {request.campaign_id}", request.campaign_id)]


def allowed_by_windows(plan: Plan, t: datetime, cals: EngineCache) -> bool:
    tz = [ZoneInfo(z) for z in plan.zones]
    ch = plan.request.channel
    ring = timedelta(seconds=plan.ruleset.ring_seconds if ch is Channel.CALL else 0)
    for z in tz:
        for rule in plan.ruleset.windows:
            if ch in rule.channels and not window_open(rule, t, z, ring, cals):
                return False
        if not preference_open(plan.request, t, z, ring):
            return False
    return True


def next_window(plan: Plan, t0: datetime, cals: EngineCache) -> datetime | None:
    """Earliest instant >= t0 open in every zone: t0 itself or some span's opening.

    Openings are produced day by day and tried in time order; a day's openings are tried once
    no later day can produce an earlier one, so the first open candidate is the answer.
    """
    if allowed_by_windows(plan, t0, cals):
        return t0
    ch = plan.request.channel
    minutes = {0}
    for rule in plan.ruleset.windows:
        if ch in rule.channels:
            for spans in (*rule.hours, rule.holiday_hours):
                minutes.update(s.start for s in spans)
    nb = plan.request.preferences.not_before
    if nb is not None:
        minutes.add(nb.hour * 60 + nb.minute)
    starts = sorted(minutes)
    zones = [ZoneInfo(name) for name in plan.zones]
    firsts = [t0.astimezone(z).date() for z in zones]
    pending: list[datetime] = []
    for day in range(SEARCH_DAYS + 1):
        step = timedelta(days=day)
        for z, first in zip(zones, firsts, strict=True):
            for m in starts:
                at = cals.first_instant(first + step, m, z)
                if at > t0:
                    heapq.heappush(pending, at)
        # Any opening of a later local day comes at or after that day's earliest midnight.
        bound = min(
            cals.day_start(first + step + timedelta(days=1), z)
            for z, first in zip(zones, firsts, strict=True)
        )
        while pending and pending[0] <= bound:
            at = heapq.heappop(pending)
            if allowed_by_windows(plan, at, cals):
                return at
    while pending:
        at = heapq.heappop(pending)
        if allowed_by_windows(plan, at, cals):
            return at
    return None


def decide(
    plan: Plan,
    observation: Observation | None,
    reservation_id: str | None,
    cals: EngineCache,
    failure: str | None = None,
) -> Decision:
    """Turn what the backend saw into the answer; `failure` is a backend error (fail closed)."""
    comp = plan.compiled
    if (
        observation is not None
        and observation.reserved
        and failure is None
        and not plan.static_reasons
        and _passes(plan, observation)
    ):
        # Granted, and nothing observed denies: no reason to explain, no time to search.
        return Decision(
            True, reservation_id, (), None, plan.zones, comp.label, comp.digest, plan.now
        )
    reasons = list(plan.static_reasons)
    final = plan.final
    t0 = plan.now
    if failure is not None:
        reasons.append(Reason("backend-unavailable", f"ledger backend failed: {failure}"))
        final = True
    if observation is not None:
        for check, info, seen in zip(plan.checks, plan.infos, observation.counts, strict=True):
            if seen.count < check.limit:
                continue
            if info.kind == "cap":
                msg = f"{info.message} ({info.subject}: {seen.count} of {check.limit})"
            else:
                msg = f"{info.message} ({info.subject})"
            reasons.append(Reason(info.rule_id, msg, info.citation))
            if seen.pivot_us is not None:
                tz = [ZoneInfo(z) for z in plan.zones]
                release = leaves_window(from_us(seen.pivot_us), tz, info.days, info.calendar)
                t0 = max(t0, release)
        flag_rules = comp.flag_rules
        for fc, present in zip(plan.flag_checks, observation.flags, strict=True):
            if not present and not fc.required:
                continue
            _, _, scope, subject = fc.target.split("|", 3)
            for flag in sorted(present & fc.blocking):
                rule = flag_rules[flag]
                where = f"{scope} {subject}" if scope != "phone" else "this number"
                reasons.append(
                    Reason(
                        f"flag:{flag}", f"{flag.replace('_', ' ')} is set on {where}", rule.citation
                    )
                )
                final = True
            for flag in sorted(fc.required - present):
                reasons.append(
                    Reason(
                        "third-party",
                        "third parties may be contacted only when the debtor is unreachable "
                        f"({flag} is not set on the debtor)",
                        plan.ruleset.third_party_citation,
                    )
                )
                final = True
    # A look-only check (no reservation id) is allowed when nothing denied it.
    granted = observation is not None and (observation.reserved or reservation_id is None)
    allowed = granted and not reasons
    next_at: datetime | None = None
    if not allowed and not final:
        next_at = next_window(plan, t0, cals)
    return Decision(
        allowed=allowed,
        reservation_id=reservation_id if allowed else None,
        reasons=tuple(reasons),
        next_allowed_at=next_at,
        zones=plan.zones,
        ruleset=comp.label,
        ruleset_hash=comp.digest,
        at=plan.now,
    )


def _passes(plan: Plan, observation: Observation) -> bool:
    """No observed count at its limit, no blocking flag present, no required flag missing."""
    for check, seen in zip(plan.checks, observation.counts, strict=True):
        if seen.count >= check.limit:
            return False
    for fc, present in zip(plan.flag_checks, observation.flags, strict=True):
        if present & fc.blocking or not fc.required <= present:
            return False
    return True
