"""The day's strategy run: every open case is scored if it never was, given a strategy (or a
stricter one by the nightly re-choice, unless a manager chose it), advanced one day, and what
that day asks is done: messages go through the messaging service and the guard (a denial is
logged, never lost), call steps put the case on their campaign's list (`cases.queued_campaign`),
escalations change the strategy or the status with history. A day run twice does nothing twice.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from dialer.cases.errors import CaseError, CaseRefused
from dialer.cases.facts import OPEN_STATUSES, CaseSnapshot, batches, load_snapshots
from dialer.cases.models import Actor, CaseStatus
from dialer.cases.scoring import LogisticModel, PointsModel, Score, Scorer
from dialer.cases.service import _reason
from dialer.cases.state import CaseRow, begin_write, read_case, record_history, set_status
from dialer.cases.strategy import (
    Action,
    ActionKind,
    ContactStep,
    Position,
    Strategies,
    advance,
    choose,
    start,
)
from dialer.messaging.models import Channel, MessageStatus
from dialer.messaging.service import MessagingService
from dialer.messaging.tables import Message
from dialer.messaging.templates import Template, load_templates
from dialer.store.db import Store
from dialer.store.models import Case, CaseStrategyAction

log = logging.getLogger(__name__)

__all__ = [
    "BATCH",
    "Outcome",
    "RunReport",
    "StrategyRunError",
    "check_templates",
    "clear_override",
    "override_strategy",
    "run_strategies",
    "strategy_templates",
]

BATCH = 500
ACTOR = Actor.system("strategy-run")
SHIPPED_TEMPLATES = Path(__file__).with_name("presets") / "templates.toml"


class StrategyRunError(CaseError):
    """The run cannot start as configured (a template missing, no messaging); nothing done."""


class Outcome(enum.StrEnum):
    """What became of one action of the run (case_strategy_actions.outcome)."""

    PENDING = "pending"  # a message not yet put to the guard (the next run finishes it)
    SENT = "sent"
    SCHEDULED = "scheduled"  # the guard said not now: it goes when allowed, by a later run
    BLOCKED = "blocked"  # the guard said no, with no end in sight (opt-out, flag)
    FAILED = "failed"
    UNKNOWN = "unknown"  # interrupted mid-send: may have gone; never sent twice
    SKIPPED = "skipped"  # nothing to send to (no mobile, no e-mail address, nothing owed)
    QUEUED = "queued"  # on the call list of the step's campaign
    ESCALATED = "escalated"
    STATUS_SET = "status_set"
    REFUSED = "refused"  # the status could not be set from where the case was
    FINISHED = "finished"
    WOULD = "would"  # a dry run's answer: this would be done


_MESSAGE_OUTCOME = {
    MessageStatus.PLANNED.value: Outcome.PENDING,
    MessageStatus.SENDING.value: Outcome.PENDING,
    MessageStatus.SCHEDULED.value: Outcome.SCHEDULED,
    MessageStatus.SENT.value: Outcome.SENT,
    MessageStatus.DELIVERED.value: Outcome.SENT,
    MessageStatus.BLOCKED.value: Outcome.BLOCKED,
    MessageStatus.FAILED.value: Outcome.FAILED,
    MessageStatus.UNKNOWN.value: Outcome.UNKNOWN,
}
_MESSAGE_KINDS = (ActionKind.SMS.value, ActionKind.EMAIL.value)


@dataclass
class RunReport:
    today: date
    dry_run: bool = False
    cases: int = 0  # open cases looked at
    already_run: int = 0  # cases this day had already moved
    chosen: int = 0  # cases given their first strategy
    rechosen: int = 0  # cases moved to a stricter strategy by the nightly re-choice
    scored: int = 0  # cases scored because they never were
    # kind -> outcome -> count, for what this run asked
    actions: dict[str, dict[str, int]] = field(default_factory=dict)
    # outcome -> count, for messages of earlier runs settled now (sent the next morning)
    earlier: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, outcome: str, n: int = 1) -> None:
        by = self.actions.setdefault(kind, {})
        by[outcome] = by.get(outcome, 0) + n

    def move(self, kind: str, old: str, new: str) -> None:
        self.count(kind, old, -1)
        if self.actions[kind][old] == 0:
            del self.actions[kind][old]
        self.count(kind, new)

    def to_dict(self) -> dict[str, Any]:
        return {
            "today": self.today.isoformat(),
            "dry_run": self.dry_run,
            "cases": self.cases,
            "already_run": self.already_run,
            "chosen": self.chosen,
            "rechosen": self.rechosen,
            "scored": self.scored,
            "actions": self.actions,
            "earlier": self.earlier,
        }


def check_templates(strategies: Strategies, templates: Mapping[str, Template]) -> list[str]:
    """Each message step whose template is missing or of the wrong channel, named by its key."""
    problems = []
    for name, strategy in strategies.strategies.items():
        for i, step in enumerate(strategy.steps):
            if not isinstance(step, ContactStep) or step.kind == "call":
                continue
            where = f"strategies.{name}.steps[{i}].template"
            found = templates.get(step.template or "")
            if found is None:
                problems.append(f"{where}: no template {step.template!r}")
            elif found.channel.value != step.kind:
                problems.append(
                    f"{where}: template {step.template!r} is for {found.channel.value}, "
                    f"the step sends {step.kind}"
                )
    return problems


def strategy_templates() -> dict[str, Template]:
    """The shipped strategies' templates (a tenant's own replace them by name: see
    TenantFiles.templates, which the strategy run reads)."""
    return load_templates(SHIPPED_TEMPLATES)


def _has_messages(strategies: Strategies) -> bool:
    return any(
        isinstance(step, ContactStep) and step.kind != "call"
        for s in strategies.strategies.values()
        for step in s.steps
    )


# ----- one case's day, decided (pure) -------------------------------------------------------


@dataclass
class _CasePlan:
    snap: CaseSnapshot
    position: Position
    actions: tuple[Action, ...]
    reasons: tuple[str, ...] | None  # set when the strategy changed today
    strategy_changes: list[tuple[str | None, str, str]]  # (from, to, why)
    score: Score | None  # set when the run scored the case
    terms_json: str | None
    queue: tuple[str, int, date] | None
    clear_queue: bool
    rechosen: bool = False


def _severity(strategies: Strategies, name: str) -> int:
    """Strategies are listed mildest first: a re-choice only moves a case down the list."""
    return list(strategies.strategies).index(name) if name in strategies.strategies else -1


def _plan_case(
    strategies: Strategies, scorer: Scorer, snap: CaseSnapshot, today: date
) -> _CasePlan | None:
    position = snap.position
    if position is not None and position.last_run is not None and position.last_run >= today:
        return None
    score, terms = snap.score, None
    if score is None:
        score, terms = scorer.score_json(snap.features)
    choice = choose(strategies, snap.facts, score, snap.never_contacted)
    reasons: tuple[str, ...] | None = None
    changes: list[tuple[str | None, str, str]] = []
    rechosen = False
    if position is None or position.strategy not in strategies.strategies:
        # A case new to strategies, or on one the tenant's file no longer has.
        old = None if position is None else position.strategy
        position = start(choice.strategy, today)
        reasons = choice.reasons
        changes.append((old, choice.strategy, "; ".join(choice.reasons)))
    elif not snap.overridden and _severity(strategies, choice.strategy) > _severity(
        strategies, position.strategy
    ):
        changes.append(
            (position.strategy, choice.strategy, "nightly re-choice: " + "; ".join(choice.reasons))
        )
        position = replace(start(choice.strategy, today), last_run=position.last_run)
        reasons = choice.reasons
        rechosen = True
    moved = advance(strategies, position, snap.facts, today)
    queue = None
    for action in moved.actions:
        if action.kind is ActionKind.ESCALATE and action.target is not None:
            why = action.reason or f"{action.strategy} step {action.step + 1}"
            changes.append((action.strategy, action.target, why))
            reasons = (f"escalated from {action.strategy}: {why}",)
        elif action.kind is ActionKind.CALL and action.campaign is not None:
            queue = (action.campaign, action.step, today)
    end = moved.position
    went_on = (end.strategy, end.step, end.finished) != (
        position.strategy,
        position.step,
        position.finished,
    )
    clear = queue is None and snap.queued_campaign is not None and (went_on or end.finished)
    return _CasePlan(
        snap,
        end,
        moved.actions,
        reasons,
        changes,
        score if terms else None,
        terms,
        queue,
        clear,
        rechosen,
    )


# ----- the run ------------------------------------------------------------------------------


def _batch_key(today: date, action: Action) -> str:
    return f"strategy:{today.isoformat()}:{action.strategy}:{action.step}"[:100]


def _lock(conn: Connection, lo: int, hi: int, tenant_id: int) -> None:
    if conn.dialect.name == "sqlite":
        begin_write(conn)
        return
    conn.execute(
        select(Case.id)
        .where(Case.id.between(lo, hi), Case.tenant_id == tenant_id)
        .where(Case.status.in_(OPEN_STATUSES))
        .with_for_update()
    )


def _write(
    conn: Connection,
    plans: Sequence[_CasePlan],
    model_name: str,
    today: date,
    now: datetime,
    report: RunReport,
) -> None:
    positions = []
    for p in plans:
        row: dict[str, Any] = {
            "case_id": p.snap.id,
            "strategy": p.position.strategy,
            "step": p.position.step,
            "since": p.position.since,
            "last_run": p.position.last_run,
            "finished": p.position.finished,
        }
        positions.append(row)
    if not positions:
        return
    conn.execute(
        update(Case)
        .where(Case.id == bindparam("case_id"))
        .values(
            strategy=bindparam("strategy"),
            strategy_step=bindparam("step"),
            strategy_since=bindparam("since"),
            strategy_last_run=bindparam("last_run"),
            strategy_finished=bindparam("finished"),
        ),
        positions,
    )
    for p in plans:
        case = CaseRow(p.snap.id, p.snap.tenant_id, p.snap.debtor_id, p.snap.status, None)
        values: dict[str, Any] = {}
        if p.reasons is not None:
            values["strategy_reasons"] = json.dumps(list(p.reasons), ensure_ascii=False)
        if p.score is not None:
            values.update(
                risk_score=p.score.value,
                risk_band=p.score.band.value,
                risk_terms=p.terms_json,
                scored_at=now,
                score_model=model_name,
            )
        if p.queue is not None:
            values.update(
                queued_campaign=p.queue[0], queued_step=p.queue[1], queued_since=p.queue[2]
            )
        elif p.clear_queue:
            values.update(queued_campaign=None, queued_step=None, queued_since=None)
        if values:
            conn.execute(update(Case).where(Case.id == case.id).values(**values))
        for old, new, why in p.strategy_changes:
            record_history(conn, case, "strategy", old, new, ACTOR, why[:500], now)
        rows = []
        for action in p.actions:
            outcome, detail = _carry_out(conn, case, action, now)
            if outcome is Outcome.STATUS_SET:
                case = replace(case, status=CaseStatus(action.target or case.status))
            report.count(action.kind.value, outcome.value)
            rows.append(
                {
                    "tenant_id": case.tenant_id,
                    "case_id": case.id,
                    "run_date": today,
                    "strategy": action.strategy,
                    "step": action.step,
                    "kind": action.kind.value,
                    "campaign": action.campaign,
                    "template": action.template,
                    "target": action.target,
                    "outcome": outcome.value,
                    "message_id": None,
                    "batch_key": _batch_key(today, action)
                    if action.kind.value in _MESSAGE_KINDS
                    else None,
                    "detail": detail,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        if rows:
            conn.execute(insert(CaseStrategyAction), rows)


def _carry_out(
    conn: Connection, case: CaseRow, action: Action, now: datetime
) -> tuple[Outcome, str]:
    """What the action does inside the batch's transaction (messages go after it commits)."""
    match action.kind:
        case ActionKind.SMS | ActionKind.EMAIL:
            return Outcome.PENDING, ""
        case ActionKind.CALL:
            return Outcome.QUEUED, f"on the call list of campaign {action.campaign}"
        case ActionKind.ESCALATE:
            return Outcome.ESCALATED, action.reason or f"to {action.target}"
        case ActionKind.FINISHED:
            return Outcome.FINISHED, action.reason or "end of the strategy"
        case ActionKind.SET_STATUS:
            target = CaseStatus(action.target or "")
            why = action.reason or f"strategy {action.strategy} step {action.step + 1}"
            try:
                set_status(conn, case, target, ACTOR, why, now)
            except CaseRefused as exc:
                return Outcome.REFUSED, str(exc)
            return Outcome.STATUS_SET, why
    raise AssertionError(action.kind)  # pragma: no cover - the enum is exhaustive


def _detail(row: Any) -> str:
    decision = row.decision or {}
    reasons = "; ".join(r.get("message", "") for r in decision.get("reasons", []) if r)
    if row.status == MessageStatus.SCHEDULED.value and row.not_before is not None:
        when = row.not_before.isoformat()
        return f"guard: {reasons or 'not now'}; goes at {when}"
    if row.status == MessageStatus.BLOCKED.value:
        return f"guard: {reasons or row.error or 'refused'}"
    if row.error:
        return str(row.error)
    return f"message {row.id} {row.status}"


def _settle_messages(
    store: Store,
    messaging: MessagingService,
    templates: Mapping[str, Template],
    tenant_id: int,
    actions: Sequence[Any],
    now: datetime,
) -> dict[int, tuple[str, str]]:
    """Plan, dispatch and read back the messages of these pending or scheduled actions;
    returns each action's (old outcome, new outcome)."""
    by_key: dict[str, list[Any]] = {}
    for a in actions:
        by_key.setdefault(a.batch_key, []).append(a)
    changed: dict[int, tuple[str, str]] = {}
    for key, group in by_key.items():
        template = templates[group[0].template]
        channel = Channel(group[0].kind)
        debtors = [a.debtor_id for a in group]
        plan, _ = messaging.plan(template, debtors, key)
        skipped = {s.debtor_id: s.reason for s in plan.skipped}
        messaging.dispatch(key)
        with store.begin() as conn:
            found = {
                r.debtor_id: r
                for r in conn.execute(
                    select(
                        Message.id,
                        Message.debtor_id,
                        Message.status,
                        Message.decision,
                        Message.not_before,
                        Message.error,
                    ).where(
                        Message.tenant_id == tenant_id,
                        Message.batch_key == key,
                        Message.channel == channel.value,
                        Message.debtor_id.in_(debtors),
                    )
                )
            }
            updates = []
            for a in group:
                row = found.get(a.debtor_id)
                if row is None:
                    outcome, detail, message_id = (
                        Outcome.SKIPPED,
                        skipped.get(a.debtor_id, "not planned"),
                        None,
                    )
                else:
                    outcome = _MESSAGE_OUTCOME.get(row.status, Outcome.PENDING)
                    detail, message_id = _detail(row), int(row.id)
                if outcome.value != a.outcome or message_id != a.message_id:
                    updates.append(
                        {
                            "action_id": a.id,
                            "outcome": outcome.value,
                            "detail": detail[:1000],
                            "message_id": message_id,
                        }
                    )
                    changed[int(a.id)] = (a.outcome, outcome.value)
            if updates:
                conn.execute(
                    update(CaseStrategyAction)
                    .where(CaseStrategyAction.id == bindparam("action_id"))
                    .values(
                        outcome=bindparam("outcome"),
                        detail=bindparam("detail"),
                        message_id=bindparam("message_id"),
                        updated_at=now,
                    ),
                    updates,
                )
    return changed


def _open_message_actions(
    store: Store, tenant_id: int, *, today: date | None, case_ids: Iterable[int] | None
) -> list[Any]:
    query = (
        select(
            CaseStrategyAction.id,
            CaseStrategyAction.kind,
            CaseStrategyAction.template,
            CaseStrategyAction.batch_key,
            CaseStrategyAction.outcome,
            CaseStrategyAction.message_id,
            CaseStrategyAction.run_date,
            Case.debtor_id,
        )
        .join(Case, Case.id == CaseStrategyAction.case_id)
        .where(
            CaseStrategyAction.tenant_id == tenant_id,
            CaseStrategyAction.kind.in_(_MESSAGE_KINDS),
            CaseStrategyAction.outcome.in_([Outcome.PENDING.value, Outcome.SCHEDULED.value]),
        )
        .order_by(CaseStrategyAction.id)
    )
    if today is not None:
        query = query.where(CaseStrategyAction.run_date == today)
    if case_ids is not None:
        query = query.where(CaseStrategyAction.case_id.in_(list(case_ids)))
    with store.begin() as conn:
        return list(conn.execute(query).all())


def run_strategies(
    store: Store,
    tenant_id: int,
    strategies: Strategies,
    model: PointsModel | LogisticModel,
    *,
    today: date,
    now: datetime,
    messaging: MessagingService | None = None,
    templates: Mapping[str, Template] | None = None,
    dry_run: bool = False,
    batch: int = BATCH,
) -> RunReport:
    """Advance every open case of the tenant to `today` and carry out what the day asks.
    First, messages of earlier runs that were waiting (the guard's "not now", or a run cut
    short) are settled. `dry_run` writes and sends nothing and counts what would be done."""
    templates = templates or {}
    if _has_messages(strategies):
        problems = check_templates(strategies, templates)
        if problems:
            raise StrategyRunError("; ".join(problems))
        if messaging is None and not dry_run:
            raise StrategyRunError(
                "the strategies send SMS or e-mail: the run needs the messaging settings"
            )
    report = RunReport(today, dry_run)
    if messaging is not None and not dry_run:
        earlier = _open_message_actions(store, tenant_id, today=None, case_ids=None)
        for old, new in _settle_messages(
            store, messaging, templates, tenant_id, earlier, now
        ).values():
            if old != new:
                report.earlier[new] = report.earlier.get(new, 0) + 1
    scorer = Scorer(model)
    with store.begin() as conn:
        ranges = list(batches(conn, tenant_id, batch, open_only=True))
        if not dry_run:
            # Paid, settled, closed or legal since: off every call list.
            conn.execute(
                update(Case)
                .where(
                    Case.tenant_id == tenant_id,
                    Case.queued_campaign.is_not(None),
                    Case.status.not_in(OPEN_STATUSES),
                )
                .values(queued_campaign=None, queued_step=None, queued_since=None)
            )
    for lo, hi in ranges:
        with store.begin() as conn:
            if not dry_run:
                _lock(conn, lo, hi, tenant_id)
            snaps = load_snapshots(
                conn, lo, hi, today=today, now=now, tenant_id=tenant_id, open_only=True
            )
            plans = []
            for snap in snaps:
                report.cases += 1
                plan = _plan_case(strategies, scorer, snap, today)
                if plan is None:
                    report.already_run += 1
                    continue
                report.chosen += snap.position is None
                report.rechosen += plan.rechosen
                report.scored += plan.score is not None
                plans.append(plan)
            if dry_run:
                for plan in plans:
                    for action in plan.actions:
                        report.count(action.kind.value, Outcome.WOULD.value)
                continue
            _write(conn, plans, model.name, today, now, report)
        if messaging is not None:
            pending = _open_message_actions(
                store, tenant_id, today=today, case_ids=[p.snap.id for p in plans]
            )
            changed = _settle_messages(store, messaging, templates, tenant_id, pending, now)
            kinds = {a.id: a.kind for a in pending}
            for action_id, (old, new) in changed.items():
                report.move(kinds[action_id], old, new)
    log.info("= strategy run %s: %s", today.isoformat(), report.to_dict())
    return report


# ----- a manager's choice -------------------------------------------------------------------


def override_strategy(
    store: Store,
    tenant_id: int,
    case_id: int,
    strategy: str,
    strategies: Strategies,
    actor: Actor,
    why: str,
    now: datetime,
) -> None:
    """Put the case on `strategy` from its first step (the next run starts it) and keep it
    there through the nightly re-choice until the override is cleared; in the history."""
    why = _reason(why, "why")
    if strategy not in strategies.strategies:
        known = ", ".join(strategies.strategies)
        raise CaseRefused("strategy", f"no strategy {strategy!r} (known: {known})")
    with store.begin() as conn:
        begin_write(conn)
        case = read_case(conn, tenant_id, case_id, lock=True)
        old = conn.execute(select(Case.strategy).where(Case.id == case.id)).scalar()
        conn.execute(
            update(Case)
            .where(Case.id == case.id)
            .values(
                strategy=strategy,
                strategy_step=0,
                strategy_since=None,
                strategy_last_run=None,
                strategy_finished=False,
                strategy_reasons=json.dumps([f"chosen by {actor}: {why}"], ensure_ascii=False),
                override_by=str(actor),
                override_why=why,
                override_at=now,
            )
        )
        record_history(conn, case, "strategy", old, strategy, actor, f"override: {why}", now)


def clear_override(
    store: Store, tenant_id: int, case_id: int, actor: Actor, why: str, now: datetime
) -> bool:
    """Let the nightly re-choice decide again; False when the case had no override."""
    why = _reason(why, "why")
    with store.begin() as conn:
        begin_write(conn)
        case = read_case(conn, tenant_id, case_id, lock=True)
        held = conn.execute(select(Case.override_at).where(Case.id == case.id)).scalar()
        if held is None:
            return False
        conn.execute(
            update(Case)
            .where(Case.id == case.id)
            .values(override_by=None, override_why=None, override_at=None)
        )
        strategy = conn.execute(select(Case.strategy).where(Case.id == case.id)).scalar()
        record_history(
            conn, case, "override", strategy, None, actor, f"override cleared: {why}", now
        )
    return True
