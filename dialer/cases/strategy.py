"""Collection strategies as data: sequences of steps (contact by call, SMS or e-mail, wait,
condition, escalate), the choice of a strategy for a case with its reasons, and one day's
advance of a case through its strategy. Pure: `today` and the case's facts come in, the new
position and what to do come out, so running a day twice does nothing the second time."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dialer.cases.config_files import load_document, validate
from dialer.cases.scoring import LogisticModel, PointsModel, RiskBand, Score

__all__ = [
    "Action",
    "ActionKind",
    "Advance",
    "CaseFacts",
    "Position",
    "Strategies",
    "StrategyChoice",
    "advance",
    "choose",
    "load_strategies",
    "shipped_strategies",
    "start",
    "strategies_from_mapping",
]

SHIPPED = Path(__file__).with_name("presets") / "strategies.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Check = Literal[
    "paid",  # the balance is zero
    "promise_active",  # an open promise to pay, not yet due
    "promise_kept",  # the latest promise was kept
    "promise_broken",  # the latest promise was broken
    "contact_made",  # the debtor (or someone) was reached within `within_days`
    "right_party_contact",  # the debtor themselves was reached within `within_days`
]


class ContactStep(_Strict):
    """Reach the debtor: a call puts the case on a campaign's list; a message is sent through
    the guard with a template."""

    kind: Literal["call", "sms", "email"]
    id: str | None = None
    campaign: str | None = None
    template: str | None = None

    @model_validator(mode="after")
    def _needs(self) -> ContactStep:
        if self.kind == "call" and not self.campaign:
            raise ValueError("a call step needs 'campaign'")
        if self.kind != "call" and not self.template:
            raise ValueError(f"an {self.kind} step needs 'template'")
        return self


class WaitStep(_Strict):
    kind: Literal["wait"]
    id: str | None = None
    days: int = Field(ge=1, le=365)


# Where a condition (or its alternative) leads: the next step, the end, a named step of the
# same strategy, or another strategy.
Goto = str


class ConditionStep(_Strict):
    kind: Literal["condition"]
    id: str | None = None
    check: Check
    within_days: int = Field(default=7, ge=1, le=365)
    then: Goto = "next"
    otherwise: Goto = Field(default="next", alias="else")


class EscalateStep(_Strict):
    """Move the case to another strategy (`to`), or to a status (`status`: legal, closed) that
    takes it out of the collectors' hands."""

    kind: Literal["escalate"]
    id: str | None = None
    to: str | None = None
    status: Literal["legal", "closed"] | None = None
    reason: str = ""

    @model_validator(mode="after")
    def _one_target(self) -> EscalateStep:
        if (self.to is None) == (self.status is None):
            raise ValueError("an escalation names exactly one of 'to' or 'status'")
        return self


Step = Annotated[ContactStep | WaitStep | ConditionStep | EscalateStep, Field(discriminator="kind")]


class Strategy(_Strict):
    title: str
    title_zh: str | None = None
    steps: list[Step] = Field(min_length=1)


class When(_Strict):
    """All given bounds must hold; days and balances inclusive."""

    days_past_due_min: int | None = None
    days_past_due_max: int | None = None
    balance_min: float | None = None
    balance_max: float | None = None
    risk_band: list[RiskBand] | None = None
    broken_promises_min: int | None = None
    never_contacted: bool | None = None


class Selection(_Strict):
    strategy: str
    when: When = When()


class Strategies(_Strict):
    """A tenant's strategies and how one is chosen for a case (first matching rule wins)."""

    strategies: dict[str, Strategy] = Field(min_length=1)
    selection: list[Selection] = []
    default: str

    @model_validator(mode="after")
    def _references(self) -> Strategies:
        names = set(self.strategies)
        problems: list[str] = []
        if self.default not in names:
            problems.append(f"default: unknown strategy {self.default!r}")
        for i, sel in enumerate(self.selection):
            if sel.strategy not in names:
                problems.append(f"selection[{i}].strategy: unknown strategy {sel.strategy!r}")
        for name, strat in self.strategies.items():
            ids = [s.id for s in strat.steps if s.id]
            if len(ids) != len(set(ids)):
                problems.append(f"strategies.{name}.steps: step ids repeat")
            for i, step in enumerate(strat.steps):
                where = f"strategies.{name}.steps[{i}]"
                if isinstance(step, ConditionStep):
                    for key, goto in (("then", step.then), ("else", step.otherwise)):
                        bad = _bad_goto(goto, set(ids), names)
                        if bad:
                            problems.append(f"{where}.{key}: {bad}")
                if isinstance(step, EscalateStep) and step.to is not None and step.to not in names:
                    problems.append(f"{where}.to: {step.to!r} is not a strategy")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def step(self, position: Position) -> Step | None:
        steps = self.strategies[position.strategy].steps
        return steps[position.step] if position.step < len(steps) else None


def _bad_goto(goto: str, step_ids: set[str], strategies: set[str]) -> str | None:
    if goto in ("next", "stop"):
        return None
    kind, _, target = goto.partition(":")
    if kind == "step" and target in step_ids:
        return None
    if kind == "strategy" and target in strategies:
        return None
    return f"{goto!r}: expected next, stop, step:<id of this strategy> or strategy:<name>"


# --- a case's position and facts --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """Where a case is: its strategy, the step it is on and since when, the last day run."""

    strategy: str
    step: int = 0
    since: date | None = None
    last_run: date | None = None
    finished: bool = False


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """What conditions look at, as of the day being run."""

    balance: float
    promise_active: bool = False
    last_promise: Literal["kept", "broken"] | None = None
    last_contact: date | None = None
    last_right_party_contact: date | None = None
    days_past_due: int = 0
    broken_promises: int = 0


class ActionKind(enum.StrEnum):
    CALL = "call"
    SMS = "sms"
    EMAIL = "email"
    ESCALATE = "escalate"
    SET_STATUS = "set_status"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class Action:
    """What the day's run must do for the case: queue it on a campaign, send a message, move it
    to another strategy or status. `step` says which step asked for it."""

    kind: ActionKind
    strategy: str
    step: int
    campaign: str | None = None
    template: str | None = None
    target: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Advance:
    position: Position
    actions: tuple[Action, ...] = ()
    trace: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class StrategyChoice:
    strategy: str
    reasons: tuple[str, ...]


def choose(
    strategies: Strategies, facts: CaseFacts, score: Score | None, never_contacted: bool
) -> StrategyChoice:
    """The first selection rule the case meets (with the bounds it met as reasons), else the
    default."""
    for i, sel in enumerate(strategies.selection):
        reasons = _meets(sel.when, facts, score, never_contacted)
        if reasons is not None:
            return StrategyChoice(sel.strategy, (f"rule {i + 1}", *reasons))
    return StrategyChoice(strategies.default, ("no rule matched: the default",))


def _meets(
    when: When, facts: CaseFacts, score: Score | None, never_contacted: bool
) -> tuple[str, ...] | None:
    reasons: list[str] = []
    dpd, bal = facts.days_past_due, facts.balance
    if when.days_past_due_min is not None:
        if dpd < when.days_past_due_min:
            return None
        reasons.append(f"days past due {dpd} >= {when.days_past_due_min}")
    if when.days_past_due_max is not None:
        if dpd > when.days_past_due_max:
            return None
        reasons.append(f"days past due {dpd} <= {when.days_past_due_max}")
    if when.balance_min is not None:
        if bal < when.balance_min:
            return None
        reasons.append(f"balance {bal:g} >= {when.balance_min:g}")
    if when.balance_max is not None:
        if bal > when.balance_max:
            return None
        reasons.append(f"balance {bal:g} <= {when.balance_max:g}")
    if when.risk_band is not None:
        if score is None or score.band not in when.risk_band:
            return None
        reasons.append(f"risk {score.value:g} is {score.band.value}")
    if when.broken_promises_min is not None:
        if facts.broken_promises < when.broken_promises_min:
            return None
        reasons.append(f"broken promises {facts.broken_promises} >= {when.broken_promises_min}")
    if when.never_contacted is not None:
        if never_contacted != when.never_contacted:
            return None
        reasons.append("never contacted" if never_contacted else "contacted before")
    return tuple(reasons)


def start(strategy: str, today: date) -> Position:
    return Position(strategy=strategy, step=0, since=today)


def _check(step: ConditionStep, facts: CaseFacts, today: date) -> bool:
    recent = today - timedelta(days=step.within_days)
    match step.check:
        case "paid":
            return facts.balance <= 0
        case "promise_active":
            return facts.promise_active
        case "promise_kept":
            return facts.last_promise == "kept"
        case "promise_broken":
            return facts.last_promise == "broken"
        case "contact_made":
            return facts.last_contact is not None and facts.last_contact > recent
        case "right_party_contact":
            last = facts.last_right_party_contact
            return last is not None and last > recent
    raise AssertionError(step.check)  # pragma: no cover - Literal is exhaustive


def advance(strategies: Strategies, position: Position, facts: CaseFacts, today: date) -> Advance:
    """Run `today` for one case: take every step that is due today, stop at a wait that is not
    over (or the end). A day already run returns the position unchanged and no action."""
    if position.last_run is not None and today <= position.last_run:
        return Advance(position, (), ("already run for this day",))
    if position.finished:
        return Advance(replace(position, last_run=today), (), ("strategy finished",))
    pos = position if position.since is not None else replace(position, since=today)
    actions: list[Action] = []
    trace: list[str] = []
    seen: set[tuple[str, int]] = set()
    while True:
        step = strategies.step(pos)
        if step is None:
            actions.append(Action(ActionKind.FINISHED, pos.strategy, pos.step))
            trace.append(f"{pos.strategy}: end of the strategy")
            pos = replace(pos, finished=True)
            break
        here = (pos.strategy, pos.step)
        if here in seen:
            # A loop of conditions and gotos with no wait: the rest waits for tomorrow.
            trace.append(f"{pos.strategy}[{pos.step}]: reached twice today, resumes tomorrow")
            break
        seen.add(here)
        nxt = replace(pos, step=pos.step + 1, since=today)
        if isinstance(step, ContactStep):
            actions.append(
                Action(
                    ActionKind(step.kind),
                    pos.strategy,
                    pos.step,
                    campaign=step.campaign,
                    template=step.template,
                )
            )
            trace.append(f"{pos.strategy}[{pos.step}]: {step.kind}")
            pos = nxt
        elif isinstance(step, WaitStep):
            assert pos.since is not None
            due = pos.since + timedelta(days=step.days)
            if today < due:
                trace.append(f"{pos.strategy}[{pos.step}]: waiting until {due.isoformat()}")
                break
            trace.append(f"{pos.strategy}[{pos.step}]: waited {step.days} days")
            pos = nxt
        elif isinstance(step, ConditionStep):
            met = _check(step, facts, today)
            goto = step.then if met else step.otherwise
            trace.append(f"{pos.strategy}[{pos.step}]: {step.check} is {met}: {goto}")
            if goto == "stop":
                actions.append(Action(ActionKind.FINISHED, pos.strategy, pos.step, reason=goto))
                pos = replace(pos, finished=True)
                break
            pos = _goto(strategies, pos, goto, today, actions)
        elif step.to is not None:
            actions.append(
                Action(
                    ActionKind.ESCALATE, pos.strategy, pos.step, target=step.to, reason=step.reason
                )
            )
            trace.append(f"{pos.strategy}[{pos.step}]: escalate to {step.to}")
            pos = start(step.to, today)
        else:
            actions.append(
                Action(
                    ActionKind.SET_STATUS,
                    pos.strategy,
                    pos.step,
                    target=step.status,
                    reason=step.reason,
                )
            )
            trace.append(f"{pos.strategy}[{pos.step}]: status {step.status}")
            pos = replace(nxt, finished=True)
            break
    return Advance(replace(pos, last_run=today), tuple(actions), tuple(trace))


def _goto(
    strategies: Strategies, pos: Position, goto: str, today: date, actions: list[Action]
) -> Position:
    if goto == "next":
        return replace(pos, step=pos.step + 1, since=today)
    kind, _, target = goto.partition(":")
    if kind == "step":
        steps = strategies.strategies[pos.strategy].steps
        index = next(i for i, s in enumerate(steps) if s.id == target)
        return replace(pos, step=index, since=today)
    actions.append(Action(ActionKind.ESCALATE, pos.strategy, pos.step, target=target))
    return start(target, today)


def strategies_from_mapping(data: Mapping[str, object], source: str = "<strategies>") -> Strategies:
    return validate(Strategies, data, source)


def load_strategies(path: str | Path) -> Strategies:
    """A tenant's strategies from TOML or JSON; errors name the file and the key."""
    return strategies_from_mapping(load_document(path), str(path))


def shipped_strategies() -> Strategies:
    """The five templates: gentle and firm reminder, negotiation and settlement, pre-legal,
    legal."""
    return load_strategies(SHIPPED)


def shipped_score_model() -> PointsModel | LogisticModel:
    from dialer.cases.scoring import load_score_model

    return load_score_model(str(SHIPPED.with_name("score.toml")))


__all__ += ["shipped_score_model"]
