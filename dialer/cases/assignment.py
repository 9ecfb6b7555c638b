"""Assignment rules as data: which team, collector and dialer campaign a case goes to, with
the reasons. Pure and deterministic: the cases' facts and the collectors' loads come in, one
decision per case comes out, in the order the cases are given."""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dialer.cases.config_files import check_ranges, load_document, validate
from dialer.cases.scoring import RiskBand

__all__ = [
    "AssignmentRules",
    "CaseFacts",
    "CollectorInfo",
    "Decision",
    "Roster",
    "Rule",
    "Seniority",
    "assign_all",
    "decide",
    "load_rules",
    "rules_from_mapping",
]

SHIPPED = Path(__file__).with_name("presets") / "assignment.toml"
AUTO = "auto"
NONE = "none"
# The statuses that are worked: assigned, and counted against a collector's capacity.
OpenStatus = Literal["new", "in_progress", "promise_to_pay", "broken_promise"]
OPEN_STATUSES: tuple[str, ...] = ("new", "in_progress", "promise_to_pay", "broken_promise")


class Seniority(enum.StrEnum):
    JUNIOR = "junior"
    SENIOR = "senior"
    LEAD = "lead"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Seniority.JUNIOR: 0, Seniority.SENIOR: 1, Seniority.LEAD: 2}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class When(_Strict):
    """All given bounds must hold (days and balances inclusive); lists mean "one of"."""

    status: list[OpenStatus] | None = None
    days_past_due_min: int | None = Field(default=None, ge=0)
    days_past_due_max: int | None = Field(default=None, ge=0)
    balance_min: float | None = Field(default=None, ge=0)
    balance_max: float | None = Field(default=None, ge=0)
    risk_band: list[RiskBand] | None = None
    region: list[str] | None = None
    product: list[str] | None = None
    language: list[str] | None = None

    @model_validator(mode="after")
    def _ranges(self) -> When:
        check_ranges(self)
        return self


class Rule(_Strict):
    """Where a matching case goes. `team`: that team (omitted: the case keeps its team).
    `collector`: "auto" picks a qualified collector with room (in `team` when named), an
    agent id names one, "none" leaves the case with the team's queue; omitted means "auto"
    when the rule names a team, else the collector stays. `campaign`: the dialer campaign the
    case is given to ("none" takes it off; omitted: unchanged)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    when: When = When()
    team: str | None = Field(default=None, min_length=1, max_length=64)
    collector: str | None = Field(default=None, min_length=1, max_length=64)
    campaign: str | None = Field(default=None, min_length=1, max_length=100)
    seniority_min: Seniority | None = None
    skills: list[str] = []
    match_language: bool = True

    @model_validator(mode="after")
    def _targets(self) -> Rule:
        if self.team is None and self.collector is None and self.campaign is None:
            raise ValueError("a rule names at least one of 'team', 'collector' or 'campaign'")
        return self

    @property
    def picks(self) -> str | None:
        """What the rule does with the collector: auto, none, an agent id, or None (keep)."""
        if self.collector is not None:
            return self.collector
        return AUTO if self.team is not None else None


class ImportedBands(_Strict):
    """Bands of a case not yet scored, from its debts' imported risk_score (0..1000)."""

    medium: float = Field(default=400, ge=0, le=1000)
    high: float = Field(default=700, ge=0, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> ImportedBands:
        if self.high <= self.medium:
            raise ValueError("'high' must be above 'medium'")
        return self


class AssignmentRules(_Strict):
    """A tenant's rules: the first rule a case meets places it; a case no rule meets stays."""

    rules: list[Rule] = Field(min_length=1)
    # An automatic pick for a high-risk case takes a collector at least this senior.
    high_risk_seniority: Seniority | None = Seniority.SENIOR
    # A case whose collector still qualifies (and is within capacity) stays with them.
    keep_current: bool = True
    imported_risk_bands: ImportedBands = ImportedBands()

    @model_validator(mode="after")
    def _unique_names(self) -> AssignmentRules:
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"rules[{i}].name: {rule.name!r} is used by an earlier rule")
            seen.add(rule.name)
        return self

    def band_of_imported(self, risk: float | None) -> RiskBand | None:
        if risk is None:
            return None
        bands = self.imported_risk_bands
        if risk >= bands.high:
            return RiskBand.HIGH
        return RiskBand.MEDIUM if risk >= bands.medium else RiskBand.LOW


def rules_from_mapping(data: Mapping[str, object], source: str) -> AssignmentRules:
    return validate(AssignmentRules, data, source)


def load_rules(path: str | Path) -> AssignmentRules:
    """A rules file (TOML or JSON); ConfigFileError names the file and each key at fault."""
    return rules_from_mapping(load_document(path), str(path))


# --- facts in, decisions out ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """A case as the rules see it. `language`: the debtor's (zh-CN for an address in China,
    else en); `risk_band`: the stored score's band, else the imported risk score's."""

    case_id: int
    status: str
    days_past_due: int
    balance: float
    risk_band: RiskBand | None
    region: str | None
    product: str | None
    language: str | None
    team: str | None
    agent_id: str | None
    campaign: str | None
    # Given to `agent_id` by hand: the rules keep the case there while that collector works.
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class CollectorInfo:
    agent_id: str
    team: str | None
    seniority: Seniority
    languages: frozenset[str]
    skills: frozenset[str]
    capacity: int
    active: bool = True


@dataclass(frozen=True, slots=True)
class Decision:
    """Where the case goes and why; equal old and new values mean it stays."""

    case_id: int
    rule: str | None
    old_team: str | None
    new_team: str | None
    old_agent: str | None
    new_agent: str | None
    old_campaign: str | None
    new_campaign: str | None
    reasons: tuple[str, ...]
    # The rule wanted a collector and none qualified with room: the case waits in the queue.
    no_room: bool = False

    @property
    def moved(self) -> bool:
        return (
            self.old_team != self.new_team
            or self.old_agent != self.new_agent
            or self.old_campaign != self.new_campaign
        )


def _meets(when: When, case: CaseFacts) -> bool:
    if when.status is not None and case.status not in when.status:
        return False
    dpd, bal = case.days_past_due, case.balance
    if when.days_past_due_min is not None and dpd < when.days_past_due_min:
        return False
    if when.days_past_due_max is not None and dpd > when.days_past_due_max:
        return False
    if when.balance_min is not None and bal < when.balance_min:
        return False
    if when.balance_max is not None and bal > when.balance_max:
        return False
    if when.risk_band is not None and case.risk_band not in when.risk_band:
        return False
    if when.region is not None and case.region not in when.region:
        return False
    if when.product is not None and case.product not in when.product:
        return False
    return when.language is None or case.language in when.language


def _why(when: When, case: CaseFacts) -> list[str]:
    """The bounds a matching case met, in words (only made for a case that moves)."""
    out: list[str] = []
    if when.status is not None:
        out.append(f"status {case.status}")
    if when.days_past_due_min is not None:
        out.append(f"days past due {case.days_past_due} >= {when.days_past_due_min}")
    if when.days_past_due_max is not None:
        out.append(f"days past due {case.days_past_due} <= {when.days_past_due_max}")
    if when.balance_min is not None:
        out.append(f"balance {case.balance:g} >= {when.balance_min:g}")
    if when.balance_max is not None:
        out.append(f"balance {case.balance:g} <= {when.balance_max:g}")
    for key in ("risk_band", "region", "product", "language"):
        if getattr(when, key) is not None:
            out.append(f"{key.replace('_', ' ')} {getattr(case, key)}")
    return out


@dataclass(frozen=True, slots=True)
class _Need:
    """What a collector must be for one case: the pool key."""

    team: str | None
    seniority: int
    language: str | None
    skills: frozenset[str]

    def fits(self, c: CollectorInfo) -> str | None:
        """None when the collector qualifies, else why not."""
        if not c.active:
            return "inactive"
        if self.team is not None and c.team != self.team:
            return f"not in team {self.team}"
        if c.seniority.rank < self.seniority:
            return f"{c.seniority.value}, not senior enough"
        if self.language is not None and c.languages and self.language not in c.languages:
            return f"does not speak {self.language}"
        missing = self.skills - c.skills
        if missing:
            return f"lacks {', '.join(sorted(missing))}"
        return None


@dataclass
class Roster:
    """The tenant's collectors and their open cases as the run goes: capacity is kept by
    counting every case given and taken away."""

    collectors: Mapping[str, CollectorInfo]
    load: dict[str, int] = field(default_factory=dict)
    _pools: dict[_Need, list[tuple[int, float, int, str]]] = field(default_factory=dict)
    _pools_of: dict[str, list[_Need]] = field(default_factory=dict)
    _needs: dict[tuple[str, bool, str | None], _Need] = field(default_factory=dict)

    @classmethod
    def of(cls, collectors: Iterable[CollectorInfo], load: Mapping[str, int]) -> Roster:
        by_id = {c.agent_id: c for c in collectors}
        return cls(by_id, {a: int(load.get(a, 0)) for a in by_id})

    def need(self, rules: AssignmentRules, rule: Rule, case: CaseFacts) -> _Need:
        """What the rule asks of a collector for this case (made once per rule, risk and
        language: the run asks a million times)."""
        key = (rule.name, case.risk_band is RiskBand.HIGH, case.language)
        found = self._needs.get(key)
        if found is None:
            found = self._needs[key] = _need(rules, rule, case)
        return found

    def _key(self, agent: str, need: _Need) -> tuple[int, float, int, str]:
        """Seniors are kept for the cases that need them: the least senior qualified collector
        first, then the lowest share of capacity in use, fewest cases, agent id."""
        c = self.collectors[agent]
        n = self.load[agent]
        return (c.seniority.rank - need.seniority, n / max(c.capacity, 1), n, agent)

    def _pool(self, need: _Need) -> list[tuple[int, float, int, str]]:
        pool = self._pools.get(need)
        if pool is None:
            pool = []
            for agent, c in self.collectors.items():
                if need.fits(c) is None:
                    self._pools_of.setdefault(agent, []).append(need)
                    if self.load[agent] < c.capacity:
                        pool.append(self._key(agent, need))
            heapq.heapify(pool)
            self._pools[need] = pool
        return pool

    def _changed(self, agent: str, delta: int) -> None:
        self.load[agent] += delta
        if self.load[agent] < self.collectors[agent].capacity:
            for need in self._pools_of.get(agent, ()):
                heapq.heappush(self._pools[need], self._key(agent, need))

    def take(self, agent: str) -> None:
        if agent in self.load:
            self._changed(agent, +1)

    def release(self, agent: str | None) -> None:
        if agent is not None and agent in self.load:
            self._changed(agent, -1)

    def least_loaded(self, need: _Need) -> str | None:
        """The first qualified collector with room in the order of `_key`; None when all are
        full."""
        pool = self._pool(need)
        while pool:
            _surplus, _ratio, n, agent = pool[0]
            if n != self.load[agent] or n >= self.collectors[agent].capacity:
                heapq.heappop(pool)  # stale: a fresh entry was pushed when the load changed
                continue
            return agent
        return None

    def room(self, agent: str) -> str:
        return f"{self.load.get(agent, 0)}/{self.collectors[agent].capacity} open"


def _need(rules: AssignmentRules, rule: Rule, case: CaseFacts) -> _Need:
    rank = rule.seniority_min.rank if rule.seniority_min is not None else 0
    if case.risk_band is RiskBand.HIGH and rules.high_risk_seniority is not None:
        rank = max(rank, rules.high_risk_seniority.rank)
    language = case.language if rule.match_language else None
    return _Need(rule.team, rank, language, frozenset(rule.skills))


def _first_rule(rules: AssignmentRules, case: CaseFacts) -> Rule | None:
    for rule in rules.rules:
        if _meets(rule.when, case):
            return rule
    return None


def _is_open(case: CaseFacts) -> bool:
    return case.status in OPEN_STATUSES


def decide(rules: AssignmentRules, roster: Roster, case: CaseFacts) -> Decision:
    """The case's place under the first rule it meets; the roster's loads follow the move."""
    rule = _first_rule(rules, case)
    if rule is None or not _is_open(case):
        why = "no rule matched" if rule is None else f"status {case.status} is not worked"
        return Decision(
            case.case_id,
            None,
            case.team,
            case.team,
            case.agent_id,
            case.agent_id,
            case.campaign,
            case.campaign,
            (why,),
        )
    team = case.team if rule.team is None else rule.team
    campaign = case.campaign
    if rule.campaign is not None:
        campaign = None if rule.campaign == NONE else rule.campaign
    current = case.agent_id
    picks = rule.picks
    agent = current
    pick_why: str | None = None
    hand = roster.collectors.get(current) if case.pinned and current is not None else None
    if hand is not None and hand.active:
        # A manager's choice outranks the rules' pick; team and campaign still follow the rule.
        pick_why = f"kept with {current}: given by hand"
    elif picks == NONE:
        agent = None
        pick_why = "the rule leaves the case with the team's queue"
    elif picks is not None:
        need = roster.need(rules, rule, case)
        known = roster.collectors.get(current) if current is not None else None
        keep = (
            rules.keep_current
            and known is not None
            and (picks in (AUTO, current))
            and need.fits(known) is None
            and roster.load[known.agent_id] <= known.capacity
        )
        if not keep:
            if picks == AUTO:
                agent = roster.least_loaded(need)
                if agent is None:
                    pick_why = "no qualified collector with room: left with the team's queue"
            else:
                named = roster.collectors.get(picks)
                unfit = "not a collector" if named is None else need.fits(named)
                if named is not None and unfit is None and roster.load[picks] >= named.capacity:
                    unfit = f"full ({roster.room(picks)})"
                agent = picks if unfit is None else None
                if unfit is not None:
                    pick_why = f"{picks} {unfit}: left with the team's queue"
    if agent == current and team == case.team and campaign == case.campaign:
        return Decision(
            case.case_id,
            rule.name,
            team,
            team,
            current,
            current,
            campaign,
            campaign,
            ("stays",),
            no_room=agent is None and picks not in (None, NONE),
        )
    if _is_open(case) and agent != current:
        roster.release(current)
        if agent is not None:
            roster.take(agent)
    reasons = [f"rule {rule.name}", *_why(rule.when, case)]
    if case.pinned and agent != current:
        reasons.append(f"given by hand to {current}, who no longer works cases")
    if agent is not None and agent != current:
        tail = (
            f"least senior, least loaded qualified collector ({roster.room(agent)})"
            if picks == AUTO
            else "named by the rule"
        )
        reasons.append(f"{agent}: {tail}")
        c = roster.collectors[agent]
        if case.risk_band is RiskBand.HIGH and rules.high_risk_seniority is not None:
            reasons.append(f"high risk: {agent} is {c.seniority.value}")
    if pick_why is not None:
        reasons.append(pick_why)
    return Decision(
        case.case_id,
        rule.name,
        case.team,
        team,
        current,
        agent,
        case.campaign,
        campaign,
        tuple(reasons),
        no_room=agent is None and picks not in (None, NONE),
    )


def assign_all(
    rules: AssignmentRules, roster: Roster, cases: Iterable[CaseFacts]
) -> Iterable[Decision]:
    """One decision per case, in order; the same cases and loads give the same decisions."""
    for case in cases:
        yield decide(rules, roster, case)
