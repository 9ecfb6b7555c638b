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
from compliance_guard.memo import BoundedMemo
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
from compliance_guard.zones import ZoneResolution, ZoneResolver

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
DAY_US = 86_400_000_000
UTC_ZONE = ZoneInfo("UTC")
NO_COUNTS: frozenset[str] = frozenset()  # no outcome counted, no flag required
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


# A day's spans of one window: (start minute, end minute, naive local end wall).
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
    calendar_days: tuple[int, ...]  # every look-back counted in local calendar days


class DayContext(NamedTuple):
    """What one local date (in each zone) means for a compiled rule set.

    Keyed by the zones' local dates, never by an offset: each value is computed from the zone
    rules for those dates, so the days on either side of a DST change get contexts of their own.
    The local time of the dial moment itself is still read from `zoneinfo` on every call.
    """

    spans: tuple[tuple[DaySpans, ...], ...]  # [window][zone]: that date's spans, holidays applied
    # [zone]: where every window is open at once (the intersections of one span of each), so
    # the common case, all open, is one test per zone; the reasons come from `spans`.
    all_open: tuple[DaySpans, ...]
    starts: dict[int, int]  # calendar look-back in days -> first instant counted (us)


class EngineCache:
    """Derived data owned by one guard: compiled rules, prepared requests, day contexts.

    Everything here is a pure function of its key, so caching never changes an answer. Every
    table is bounded (`BoundedMemo`), except those keyed by the few rule sets and holiday
    calendars loaded.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._cals: dict[tuple[str, str | None], Any] = {}
        self._compiled: dict[tuple[str, Channel, PhoneType], Compiled] = {}
        self._instants: BoundedMemo[tuple[date, int, str], datetime] = BoundedMemo(max_entries)
        self._zones: BoundedMemo[tuple[str, ...], tuple[ZoneInfo, ...]] = BoundedMemo(max_entries)
        self._prepared: BoundedMemo[tuple[Any, ...], Prepared] = BoundedMemo(max_entries)
        self._days: BoundedMemo[tuple[Any, ...], DayContext] = BoundedMemo(max_entries)

    def sizes(self) -> dict[str, int]:
        """How many entries each bounded table holds."""
        return {
            "prepared": len(self._prepared),
            "days": len(self._days),
            "instants": len(self._instants),
            "zone_sets": len(self._zones),
        }

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
            hit = self._instants.put(key, first_instant_at(d, minute, tz))
        return hit

    def zone_infos(self, names: tuple[str, ...]) -> tuple[ZoneInfo, ...]:
        hit = self._zones.get(names)
        if hit is None:
            hit = self._zones.put(names, tuple(ZoneInfo(z) for z in names))
        return hit

    def prepared(
        self, ruleset: RuleSet, request: AttemptRequest, now: datetime, zones: ZoneResolver
    ) -> Prepared:
        """The clock-free part of the plan for `request`, which is validated first.

        A hit means these very identity fields were validated when the entry was built, so only
        `now` and `facts_as_of` (not part of the key) are checked again.
        """
        try:
            key = prepared_key(ruleset, request)
            hit = self._prepared.get(key)
        except (AttributeError, TypeError):
            # A field of an unexpected type (a list where a tuple belongs): decided uncached.
            validate(request, now)
            return self.build(ruleset, request, zones.resolve(request))
        if hit is None:
            validate(request, now)
            return self._prepared.put(key, self.build(ruleset, request, zones.resolve(request)))
        validate_clock(request, now)
        return hit

    def prepare(self, ruleset: RuleSet, request: AttemptRequest, zones: ZoneResolver) -> bool:
        """Build and remember the prepared request ahead of its first decision.

        Raises `InvalidRequest` as a decision would; False when the request cannot be cached
        (a field of an unexpected type: its decisions are made uncached).
        """
        validate_identity(request)
        try:
            key = prepared_key(ruleset, request)
            hit = self._prepared.get(key)
        except (AttributeError, TypeError):
            return False
        if hit is None:
            self._prepared.put(key, self.build(ruleset, request, zones.resolve(request)))
        return True

    def build(
        self, ruleset: RuleSet, request: AttemptRequest, resolution: ZoneResolution
    ) -> Prepared:
        """The prepared request, uncached (the request must be valid)."""
        comp = self.compiled(ruleset, request.channel, request.phone_type)
        names, reasons = effective_zones(ruleset, resolution)
        zones = self.zone_infos(names)
        # Without a zone the attempt is denied; its ledgers are still named (history import)
        # and counted from UTC days.
        day_names = names or (UTC_ZONE.key,)
        return Prepared(
            _template(ruleset, comp, request),
            names,
            tuple(reasons),
            zones,
            self.zone_infos(day_names),
            (comp.digest, request.channel._value_, request.phone_type._value_, day_names),
        )

    def day(self, prep: Prepared, dates: tuple[date, ...]) -> DayContext:
        """The day context of `prep`'s rules on these local dates (one per zone)."""
        key = (prep.day_key, dates)
        hit = self._days.get(key)
        if hit is None:
            comp = prep.template.compiled
            hit = self._days.put(key, self._day_context(comp, prep.day_zones, dates))
        return hit

    def _day_context(
        self, comp: Compiled, zones: tuple[ZoneInfo, ...], dates: tuple[date, ...]
    ) -> DayContext:
        spans = tuple(tuple(self._spans(rule, d) for d in dates) for rule in comp.windows)
        all_open = tuple(
            _intersect([per_zone[zi] for per_zone in spans], zone) for zi, zone in enumerate(zones)
        )
        starts = {}
        for days in comp.calendar_days:
            back = timedelta(days=days - 1)
            # With several zones the earliest start wins (the longest look-back).
            first = min(self.day_start(d - back, z) for z, d in zip(zones, dates, strict=True))
            starts[days] = to_us(first)
        return DayContext(spans, all_open, starts)

    def _spans(self, rule: WindowRule, d: date) -> DaySpans:
        """The spans `rule` opens on local date `d` (holidays included), with their end walls."""
        spans = rule.holiday_hours if self.is_holiday(rule, d) else rule.hours[d.weekday()]
        midnight = datetime.combine(d, dtime(0))
        return tuple((s.start, s.end, midnight + timedelta(minutes=s.end)) for s in spans)

    def compiled(self, ruleset: RuleSet, channel: Channel, phone_type: PhoneType) -> Compiled:
        key = (ruleset.digest, channel, phone_type)
        hit = self._compiled.get(key)
        if hit is None:
            hit = self._compiled[key] = _compile(ruleset, channel, phone_type)
        return hit


def _intersect(windows: Sequence[DaySpans], zone: ZoneInfo) -> DaySpans:
    """Where every window is open in `zone`: one span of each, intersected.

    A minute is inside every window, with time to ring, exactly when it is inside one of
    these with time to ring before its end wall. The end walls carry `zone` as their tzinfo:
    two datetimes of the same tzinfo compare as wall clocks (offset and fold ignored), which is
    the comparison the rules mean, without stripping the zone from every reading.
    """
    out: list[tuple[int, int, datetime]] = [(0, 1440, datetime.max)]
    for spans in windows:
        out = [
            (max(a, start), min(b, stop), min(wall, end_wall))
            for a, b, wall in out
            for start, stop, end_wall in spans
            if max(a, start) < min(b, stop)
        ]
    return tuple((a, b, wall.replace(tzinfo=zone)) for a, b, wall in out)


def _compile(ruleset: RuleSet, channel: Channel, phone_type: PhoneType) -> Compiled:
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
        if channel in cap.channels and (not cap.phone_types or phone_type in cap.phone_types)
    )
    conversations = tuple(c for c in ruleset.conversations if channel in c.channels)
    calendar_days = {c.info_days for c in caps if c.calendar} | {c.days for c in conversations}
    return Compiled(
        windows=tuple(w for w in ruleset.windows if channel in w.channels),
        ring=timedelta(seconds=ruleset.ring_seconds if channel is Channel.CALL else 0),
        blocking=frozenset(f.flag.value for f in ruleset.flags if channel in f.channels),
        caps=caps,
        conversations=conversations,
        flag_rules={f.flag.value: f for f in ruleset.flags},
        label=ruleset.label,
        digest=ruleset.digest,
        calendar_days=tuple(sorted(calendar_days)),
    )


def prepared_key(ruleset: RuleSet, r: AttemptRequest) -> tuple[Any, ...]:
    """Every field a `Prepared` depends on (raises TypeError when one is unhashable)."""
    return (
        ruleset.digest,
        r.channel._value_,  # plain str: hashing an enum member calls Python code
        r.phone_type._value_,
        r.tenant,
        r.person_id,
        r.debt_ids,
        r.phone,
        r.campaign_id,
        r.third_party,
        r.time_zones,
        r.postal_code,
        r.country,
        r.region,
    )


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
    """Refuse a malformed request; the message names the field."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidRequest("now: must be timezone-aware")  # before the request's fields
    validate_identity(request)
    validate_clock(request, now)


def validate_clock(request: AttemptRequest, now: datetime) -> None:
    """What `validate` checks of a request whose identity fields were validated before."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidRequest("now: must be timezone-aware")
    if request.facts_as_of is not None and request.facts_as_of.tzinfo is None:
        raise InvalidRequest("facts_as_of: must be timezone-aware")


def validate_identity(request: AttemptRequest) -> None:
    """The fields that name ledgers and flags: non-empty strings that cannot forge a key."""
    for name in ("tenant", "person_id", "phone", "campaign_id"):
        value = getattr(request, name)
        if not isinstance(value, str) or not value or "|" in value:
            raise InvalidRequest(f"{name}: must be a non-empty string without '|', got {value!r}")
    if not request.debt_ids:
        raise InvalidRequest("debt_ids: at least one debt the attempt is about")
    for d in request.debt_ids:
        if not d or "|" in d:
            raise InvalidRequest(f"debt_ids: bad debt id {d!r}")


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
    required = NO_COUNTS  # shared: one empty set for every template, not one each
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


# What one local date means for one prepared request: the dates (one per zone), their day
# context, and the ledger checks when they depend on the date only.
TodayEntry = tuple[tuple[date, ...], DayContext, tuple[LedgerCheck, ...] | None]


class Prepared:
    """Everything about one request that does not depend on the clock, built once per debtor.

    A pure function of the rule set and of the request's identity and address fields
    (`prepared_key`), so cached under exactly those: the ledger keys and flag targets
    (`template`), and the candidate zones with what they mean for the decision.
    """

    __slots__ = (
        "calendar_only",
        "day_key",
        "day_zones",
        "template",
        "today",
        "zone_names",
        "zone_reasons",
        "zones",
    )

    def __init__(
        self,
        template: Template,
        zone_names: tuple[str, ...],
        zone_reasons: tuple[Reason, ...],
        zones: tuple[ZoneInfo, ...],
        day_zones: tuple[ZoneInfo, ...],
        day_key: tuple[str, str, str, tuple[str, ...]],
    ) -> None:
        self.template = template
        self.zone_names = zone_names  # the zones every window is evaluated in
        self.zone_reasons = zone_reasons  # a zone unknown or undetermined: denied
        self.zones = zones  # `zone_names` as zones; empty when no zone is known
        self.day_zones = day_zones  # where calendar days are counted: `zones`, else UTC
        self.day_key = day_key  # compiled rules and day zones, for the day context
        # Every ledger counts calendar days: the checks depend on the local date only.
        self.calendar_only = all(spec.calendar for spec in template.ledgers)
        # Most decisions on a debtor fall on the same local dates as the one before, so what
        # those dates mean for it is kept here: one comparison instead of a lookup and a dozen
        # small objects. Replaced whole, so threads sharing the guard see the old or the new.
        self.today: TodayEntry | None = None


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
    prep = cals.build(ruleset, request, resolution)
    return plan_prepared(ruleset, prep, request, now, cals, max_facts_age)


def plan_prepared(
    ruleset: RuleSet,
    prep: Prepared,
    request: AttemptRequest,
    now: datetime,
    cals: EngineCache,
    max_facts_age: timedelta | None,
) -> Plan:
    """`make_plan` for a request already validated and prepared: the clock-dependent part."""
    now = now.astimezone(UTC)
    now_us = to_us(now)
    tpl = prep.template
    comp = tpl.compiled
    static = list(prep.zone_reasons)
    final = bool(static)
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

    # Local readings of the dial moment, computed now from the zone rules (DST included);
    # only what the local dates mean (spans, window starts) comes from a cache.
    zones = prep.day_zones
    if len(zones) == 1:
        locals_now: Sequence[datetime] = (now.astimezone(zones[0]),)
        dates: tuple[date, ...] = (locals_now[0].date(),)
    else:
        locals_now = [now.astimezone(z) for z in zones]
        dates = tuple([local.date() for local in locals_now])
    seen = prep.today
    if seen is not None and seen[0] == dates:
        _, day, checks = seen
    else:
        day = cals.day(prep, dates)
        checks = _ledger_checks(tpl, day.starts, now_us) if prep.calendar_only else None
        prep.today = (dates, day, checks)
    if checks is None:
        checks = _ledger_checks(tpl, day.starts, now_us)
    if prep.zones:
        end_t = now + comp.ring
        if not _all_open(day.all_open, zones, locals_now, end_t):
            _closed_windows(comp, end_t, zones, locals_now, day, static)
        prefs = request.preferences
        if prefs.not_before or prefs.not_after or prefs.no_weekdays:
            closed_p = [z for z in zones if not preference_open(request, now, z, comp.ring)]
            if closed_p:
                where = ", ".join(f"{now.astimezone(z):%a %H:%M} in {z.key}" for z in closed_p)
                static.append(
                    Reason("debtor-preference", f"outside the times the debtor accepts ({where})")
                )
    return Plan(
        request,
        now,
        ruleset,
        prep.zone_names,
        tuple(static),
        final,
        checks,
        tpl.infos,
        tpl.flag_checks,
        tpl.conversation_keys,
        comp,
        now_us,
    )


def _ledger_checks(tpl: Template, starts: dict[int, int], now_us: int) -> tuple[LedgerCheck, ...]:
    """The template's ledgers with their window starts at `now_us` on the day of `starts`."""
    return tuple(
        [
            LedgerCheck(
                spec.key,
                spec.limit,
                starts[spec.days] if spec.calendar else now_us - spec.days * DAY_US + 1,
                spec.record,
                spec.counts,
            )
            for spec in tpl.ledgers
        ]
    )


def _all_open(
    all_open: tuple[DaySpans, ...],
    zones: tuple[ZoneInfo, ...],
    locals_now: Sequence[datetime],
    end_t: datetime,
) -> bool:
    """Every window open in every zone, with time to ring (the common case, tested first)."""
    for zi, spans in enumerate(all_open):
        local = locals_now[zi]
        minute = local.hour * 60 + local.minute
        for start, stop, end_wall in spans:
            # Same tzinfo on both sides: compared as local wall clocks (see `_intersect`).
            if start <= minute < stop and end_t.astimezone(end_wall.tzinfo) <= end_wall:
                break
        else:
            return False
    return True


def _closed_windows(
    comp: Compiled,
    end_t: datetime,
    zones: tuple[ZoneInfo, ...],
    locals_now: Sequence[datetime],
    day: DayContext,
    out: list[Reason],
) -> None:
    """Add a reason for each window closed in some zone: outside its spans, or with no time
    left to ring before the span ends (`end_t` is the dial moment plus the ring time)."""
    ends: list[datetime | None] = [None] * len(zones)  # local wall of the ring's end, lazily
    for rule, per_zone in zip(comp.windows, day.spans, strict=True):
        closed = []
        for zi, spans in enumerate(per_zone):
            local = locals_now[zi]
            minute = local.hour * 60 + local.minute
            for start, stop, end_wall in spans:
                if start <= minute < stop:
                    end = ends[zi]
                    if end is None:
                        end = ends[zi] = end_t.astimezone(zones[zi]).replace(tzinfo=None)
                    if end <= end_wall:
                        break
            else:
                closed.append((zones[zi], local))
        if closed:
            where = ", ".join(f"{local:%a %H:%M} in {z.key}" for z, local in closed)
            out.append(Reason(rule.id, f"{rule.message} ({where})", rule.citation))


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
        # `present & fc.blocking` without building the intersection (usually nothing is set)
        if (present and not present.isdisjoint(fc.blocking)) or not fc.required <= present:
            return False
    return True
