"""Rule sets as versioned data: windows, caps, conversation periods, flags; presets and TOML loading."""

from __future__ import annotations

import enum
import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from compliance_guard.errors import RuleSetError, RuleSetNotFound
from compliance_guard.models import Channel, Flag, Outcome, PhoneType

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRESETS = ("us-regf", "us-ma", "cn")


class Scope(enum.StrEnum):
    """Whose attempts a cap counts together."""

    PERSON = "person"
    PERSON_DEBT = "person_debt"  # one ledger per debt the call is about, for that person
    DEBT = "debt"  # every person on the debt together (joint debtors, guarantors)
    PHONE = "phone"
    CAMPAIGN = "campaign"


class ThirdPartyPolicy(enum.StrEnum):
    NEVER = "never"
    ALLOWED = "allowed"
    WHEN_DEBTOR_UNREACHABLE = "when_debtor_unreachable"


class UnknownZonePolicy(enum.StrEnum):
    DENY = "deny"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class Span:
    """Allowed local wall-clock span [start, end) in minutes after midnight (end may be 1440)."""

    start: int
    end: int


@dataclass(frozen=True)
class WindowRule:
    id: str
    citation: str
    message: str
    channels: frozenset[Channel]
    hours: tuple[tuple[Span, ...], ...]  # seven entries, Monday first; empty = closed all day
    holiday_country: str | None = None
    holiday_subdiv: str | None = None
    holiday_hours: tuple[Span, ...] = ()


@dataclass(frozen=True)
class CapRule:
    id: str
    citation: str
    message: str
    scope: Scope
    limit: int
    window_days: int
    calendar_days: bool  # True: N local calendar days ending today; False: the last N×24 hours
    channels: frozenset[Channel]
    phone_types: frozenset[PhoneType]  # empty: every phone type
    counts: frozenset[Outcome]  # outcomes that keep an attempt counted (pending ones always count)
    shared: bool = False  # counted across tenants (China: across every agency working the debt)


@dataclass(frozen=True)
class ConversationRule:
    id: str
    citation: str
    message: str
    days: int  # the conversation day is day 1
    channels: frozenset[Channel]


@dataclass(frozen=True)
class FlagRule:
    flag: Flag
    channels: frozenset[Channel]
    citation: str


@dataclass(frozen=True)
class RuleSet:
    name: str
    version: str
    description: str
    ring_seconds: int
    unknown_zone: UnknownZonePolicy
    fallback_zones: tuple[str, ...]
    windows: tuple[WindowRule, ...]
    caps: tuple[CapRule, ...]
    conversations: tuple[ConversationRule, ...]
    flags: tuple[FlagRule, ...]
    third_party: ThirdPartyPolicy
    third_party_citation: str
    digest: str  # sha256 of the resolved rules: what the audit log records

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def lookback_days(self) -> int:
        """The most days any of its rules looks back, plus one: a window of N local calendar
        days starts up to a day earlier in UTC. A ledger must keep at least this much."""
        longest = max(
            [c.window_days for c in self.caps] + [c.days for c in self.conversations],
            default=0,
        )
        return longest + 1


def _fmt_span(s: Span) -> str:
    return f"{s.start // 60:02d}:{s.start % 60:02d}-{s.end // 60:02d}:{s.end % 60:02d}"


def _resolved_dict(rs: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical, JSON-able form of a resolved rule set (the thing that is hashed)."""

    def conv(v: Any) -> Any:
        if isinstance(v, Span):
            return _fmt_span(v)
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, frozenset):
            return sorted(conv(x) for x in v)
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        if hasattr(v, "__dataclass_fields__"):
            return {k: conv(getattr(v, k)) for k in v.__dataclass_fields__}
        return v

    return {k: conv(v) for k, v in rs.items() if k != "digest"}


class _Reader:
    """Typed access to one TOML table that names the file and the key path in every error."""

    def __init__(self, source: str, table: Mapping[str, Any], path: str) -> None:
        self.source = source
        self.table = table
        self.path = path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, problem: str) -> RuleSetError:
        return RuleSetError(self.source, self.key(name), problem)

    def check_known(self, allowed: set[str]) -> None:
        for name in self.table:
            if name not in allowed:
                raise self.fail(name, f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def get(self, name: str, kind: type, default: Any = ...) -> Any:
        if name not in self.table:
            if default is ...:
                raise self.fail(name, "missing")
            return default
        value = self.table[name]
        if kind is int and isinstance(value, bool):
            raise self.fail(name, "expected an integer")
        if not isinstance(value, kind):
            raise self.fail(name, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def positive_int(self, name: str, default: Any = ...) -> int:
        value: int = self.get(name, int, default)
        if value < 0 or (value == 0 and name != "ring_seconds"):
            raise self.fail(name, f"must be positive, got {value}")
        return value

    def enum_set(self, name: str, kind: type[enum.StrEnum], default: Any = ...) -> frozenset[Any]:
        raw = self.get(name, list, default)
        out = set()
        for item in raw:
            try:
                out.add(kind(item))
            except ValueError:
                names = ", ".join(m.value for m in kind)
                raise self.fail(name, f"unknown value {item!r} (expected {names})") from None
        return frozenset(out)

    def sub(self, name: str, index: int | None = None) -> _Reader:
        value = self.table[name] if index is None else self.table[name][index]
        path = self.key(name) if index is None else f"{self.key(name)}[{index}]"
        if not isinstance(value, dict):
            raise RuleSetError(self.source, path, "expected a table")
        return _Reader(self.source, value, path)

    def tables(self, name: str) -> list[_Reader]:
        if name not in self.table:
            return []
        if not isinstance(self.table[name], list):
            raise self.fail(name, "expected an array of tables ([[...]])")
        return [self.sub(name, i) for i in range(len(self.table[name]))]


def _parse_clock(r: _Reader, name: str, text: str) -> int:
    try:
        hh, mm = text.strip().split(":")
        minutes = int(hh) * 60 + int(mm)
    except ValueError:
        raise r.fail(name, f"bad time {text!r} (expected HH:MM)") from None
    if not (0 <= int(mm) < 60 and 0 <= minutes <= 1440):
        raise r.fail(name, f"time out of range: {text!r}")
    return minutes


def _parse_spans(r: _Reader, name: str, text: str) -> tuple[Span, ...]:
    """'08:00-21:00' or '08:00-12:00,13:00-21:00'; '' means closed."""
    spans: list[Span] = []
    for part in (p for p in text.split(",") if p.strip()):
        if "-" not in part:
            raise r.fail(name, f"bad span {part!r} (expected HH:MM-HH:MM)")
        a, b = part.split("-", 1)
        span = Span(_parse_clock(r, name, a), _parse_clock(r, name, b))
        if span.end <= span.start:
            raise r.fail(name, f"span {part!r} ends before it starts")
        spans.append(span)
    return tuple(sorted(spans, key=lambda s: s.start))


def _check_zone(r: _Reader, name: str, zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise r.fail(name, f"unknown time zone {zone!r}") from None
    return zone


def _window(r: _Reader) -> WindowRule:
    r.check_known({"id", "citation", "message", "channels", "hours", "holidays"})
    if "hours" not in r.table:
        raise r.fail("hours", "missing")
    hr = r.sub("hours")
    hr.check_known({*WEEKDAYS, "all"})
    every = _parse_spans(hr, "all", hr.get("all", str, "")) if "all" in hr.table else None
    hours = []
    for day in WEEKDAYS:
        if day in hr.table:
            hours.append(_parse_spans(hr, day, hr.get(day, str)))
        elif every is not None:
            hours.append(every)
        else:
            hours.append(())
    country = subdiv = None
    holiday_hours: tuple[Span, ...] = ()
    if "holidays" in r.table:
        h = r.sub("holidays")
        h.check_known({"country", "subdiv", "hours"})
        country = h.get("country", str)
        subdiv = h.get("subdiv", str, None)
        holiday_hours = _parse_spans(h, "hours", h.get("hours", str, ""))
        try:
            import holidays

            holidays.country_holidays(country, subdiv=subdiv)
        except NotImplementedError:
            raise h.fail("country", f"no holiday calendar for {country!r}/{subdiv!r}") from None
    rid = r.get("id", str)
    return WindowRule(
        id=rid,
        citation=r.get("citation", str),
        message=r.get("message", str, "outside the permitted calling hours"),
        channels=r.enum_set("channels", Channel, [c.value for c in Channel]),
        hours=tuple(hours),
        holiday_country=country,
        holiday_subdiv=subdiv,
        holiday_hours=holiday_hours,
    )


def _cap(r: _Reader) -> CapRule:
    r.check_known(
        {"id", "citation", "message", "scope", "limit", "window_days", "calendar_days", "channels"}
        | {"phone_types", "counts", "shared"}
    )
    try:
        scope = Scope(r.get("scope", str))
    except ValueError:
        names = ", ".join(s.value for s in Scope)
        raise r.fail("scope", f"unknown scope (expected {names})") from None
    return CapRule(
        id=r.get("id", str),
        citation=r.get("citation", str),
        message=r.get("message", str, "attempt limit reached"),
        scope=scope,
        limit=r.positive_int("limit"),
        window_days=r.positive_int("window_days"),
        calendar_days=r.get("calendar_days", bool, True),
        channels=r.enum_set("channels", Channel, ["call"]),
        phone_types=r.enum_set("phone_types", PhoneType, []),
        counts=r.enum_set("counts", Outcome, [o.value for o in Outcome]),
        shared=r.get("shared", bool, False),
    )


def _conversation(r: _Reader) -> ConversationRule:
    r.check_known({"id", "citation", "message", "days", "channels"})
    return ConversationRule(
        id=r.get("id", str),
        citation=r.get("citation", str),
        message=r.get("message", str, "conversation period after a talk about this debt"),
        days=r.positive_int("days"),
        channels=r.enum_set("channels", Channel, ["call"]),
    )


def _flags(r: _Reader) -> list[FlagRule]:
    out = []
    for name in r.table:
        try:
            flag = Flag(name)
        except ValueError:
            raise r.fail(name, "unknown flag") from None
        fr = r.sub(name)
        fr.check_known({"channels", "citation"})
        out.append(FlagRule(flag, fr.enum_set("channels", Channel), fr.get("citation", str)))
    return out


def _merge_by_id(parent: list[Any], child: list[Any], attr: str) -> list[Any]:
    """Child rules replace parent rules of the same id; new ones are added after."""
    ids = {getattr(c, attr) for c in child}
    return [p for p in parent if getattr(p, attr) not in ids] + child


def parse_ruleset(data: Mapping[str, Any], source: str, depth: int = 0) -> RuleSet:
    """Validate a rule set read from TOML; errors name `source` and the offending key."""
    r = _Reader(source, data, "")
    r.check_known(
        {"name", "version", "description", "extends", "ring_seconds", "unknown_zone"}
        | {"fallback_zones", "windows", "caps", "conversation_periods", "flags", "third_party"}
    )
    parent: RuleSet | None = None
    if "extends" in data:
        if depth > 5:
            raise r.fail("extends", "rule sets extend each other too deeply")
        try:
            parent = load_preset(r.get("extends", str), depth + 1)
        except RuleSetNotFound:
            raise r.fail("extends", f"unknown rule set {data['extends']!r}") from None
    try:
        unknown_zone = UnknownZonePolicy(
            r.get("unknown_zone", str, parent.unknown_zone.value if parent else "deny")
        )
    except ValueError:
        raise r.fail("unknown_zone", "expected 'deny' or 'fallback'") from None
    fallback = tuple(
        _check_zone(r, "fallback_zones", z)
        for z in r.get("fallback_zones", list, list(parent.fallback_zones) if parent else [])
    )
    if unknown_zone is UnknownZonePolicy.FALLBACK and not fallback:
        raise r.fail("fallback_zones", "required when unknown_zone = 'fallback'")
    windows = [_window(x) for x in r.tables("windows")]
    caps = [_cap(x) for x in r.tables("caps")]
    convs = [_conversation(x) for x in r.tables("conversation_periods")]
    flags = _flags(r.sub("flags")) if "flags" in data else []
    tp_policy = parent.third_party if parent else ThirdPartyPolicy.NEVER
    tp_citation = parent.third_party_citation if parent else ""
    if "third_party" in data:
        t = r.sub("third_party")
        t.check_known({"policy", "citation"})
        try:
            tp_policy = ThirdPartyPolicy(t.get("policy", str))
        except ValueError:
            names = ", ".join(p.value for p in ThirdPartyPolicy)
            raise t.fail("policy", f"expected one of {names}") from None
        tp_citation = t.get("citation", str, "")
    if parent is not None:
        windows = _merge_by_id(list(parent.windows), windows, "id")
        caps = _merge_by_id(list(parent.caps), caps, "id")
        convs = _merge_by_id(list(parent.conversations), convs, "id")
        flags = _merge_by_id(list(parent.flags), flags, "flag")
    seen: set[str] = set()
    every: list[WindowRule | CapRule | ConversationRule] = [*windows, *caps, *convs]
    for rule in every:
        if rule.id in seen:
            raise RuleSetError(source, f"id {rule.id!r}", "rule ids must be unique")
        seen.add(rule.id)
    fields: dict[str, Any] = {
        "name": r.get("name", str),
        "version": r.get("version", str),
        "description": r.get("description", str, parent.description if parent else ""),
        "ring_seconds": r.positive_int("ring_seconds", parent.ring_seconds if parent else 60),
        "unknown_zone": unknown_zone,
        "fallback_zones": fallback,
        "windows": tuple(windows),
        "caps": tuple(caps),
        "conversations": tuple(convs),
        "flags": tuple(flags),
        "third_party": tp_policy,
        "third_party_citation": tp_citation,
    }
    canon = json.dumps(_resolved_dict(fields), sort_keys=True, separators=(",", ":"))
    return RuleSet(**fields, digest=hashlib.sha256(canon.encode()).hexdigest())


def load_ruleset_file(path: str | Path) -> RuleSet:
    """Load and validate a custom TOML rule set; errors name the file and the key."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuleSetNotFound(f"rule set file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleSetError(str(p), "(syntax)", str(exc)) from None
    return parse_ruleset(data, str(p))


def load_preset(name: str, depth: int = 0) -> RuleSet:
    """One of PRESETS, read from the TOML shipped in compliance_guard/presets/."""
    if name not in PRESETS:
        raise RuleSetNotFound(f"no preset named {name!r} (presets: {', '.join(PRESETS)})")
    res = resources.files("compliance_guard").joinpath("presets", f"{name}.toml")
    source = f"preset {name}"
    return parse_ruleset(tomllib.loads(res.read_text(encoding="utf-8")), source, depth)


def load_ruleset(name_or_path: str) -> RuleSet:
    """A preset name, or a path to a custom TOML file."""
    if name_or_path in PRESETS:
        return load_preset(name_or_path)
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return load_ruleset_file(name_or_path)
    raise RuleSetNotFound(
        f"no rule set named {name_or_path!r} (presets: {', '.join(PRESETS)}, or a .toml path)"
    )


def ruleset_as_dict(rs: RuleSet) -> dict[str, Any]:
    """The resolved rule set as plain data (what `digest` hashes)."""
    return _resolved_dict({k: getattr(rs, k) for k in rs.__dataclass_fields__})
