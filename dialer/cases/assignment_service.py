"""Assignment against the store: collectors and teams, a tenant's saved rules, and the run that
reads cases in batches, decides with dialer/cases/assignment.py and writes the moves with their
history in bulk (or only tells them, in a dry run)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, bindparam, func, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from dialer.cases import service as case_service
from dialer.cases.assignment import (
    AUTO,
    NONE,
    OPEN_STATUSES,
    AssignmentRules,
    CaseFacts,
    CollectorInfo,
    Decision,
    Roster,
    Seniority,
    decide,
    rules_from_mapping,
)
from dialer.cases.config_files import ConfigFileError
from dialer.cases.errors import CaseRefused, check_text
from dialer.cases.models import Actor
from dialer.cases.scoring import RiskBand
from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import (
    Address,
    AssignmentRuleSet,
    Campaign,
    Case,
    CaseHistory,
    Collector,
    Debt,
    Team,
)

log = logging.getLogger(__name__)

BATCH = 20_000
# SQLite refuses statements with more than 32766 bound values.
_IN_CHUNK = 5_000
KEEP_MOVES = 1_000
_MAX_HISTORY_REASON = 500


def _fail(what: str, exc: SQLAlchemyError) -> StoreError:
    return StoreError(f"{what}: {error_reason(exc)}")


def language_of(country: str | None) -> str:
    """The debtor's language as messaging reads it (dialer/messaging/audience.py)."""
    return "zh-CN" if country == "CN" else "en"


# ----- teams and collectors -----


@dataclass(frozen=True)
class CollectorView:
    agent_id: str
    name: str
    team: str | None
    seniority: str
    languages: tuple[str, ...]
    skills: tuple[str, ...]
    capacity: int
    active: bool
    open_cases: int


def _team_id(conn: Connection, tenant_id: int, name: str, now: datetime, create: bool) -> int:
    found = conn.execute(
        select(Team.id).where(Team.tenant_id == tenant_id, Team.name == name)
    ).scalar()
    if found is not None:
        return int(found)
    if not create:
        raise CaseRefused("team", f"no team {name!r}")
    return int(
        conn.execute(
            insert(Team).values(tenant_id=tenant_id, name=name, created_at=now).returning(Team.id)
        ).scalar_one()
    )


def add_team(store: Store, tenant_id: int, name: str, now: datetime) -> int:
    name = check_text("team", name).strip()
    if not name or len(name) > 64:
        raise CaseRefused("team", "a team's name has 1 to 64 characters")
    try:
        with store.begin() as conn:
            return _team_id(conn, tenant_id, name, now, create=True)
    except SQLAlchemyError as exc:
        raise _fail(f"team {name!r}", exc) from exc


def save_collector(
    store: Store,
    tenant_id: int,
    agent_id: str,
    now: datetime,
    *,
    name: str | None = None,
    team: str | None = None,
    seniority: str = Seniority.JUNIOR.value,
    languages: Sequence[str] = ("en",),
    skills: Sequence[str] = (),
    capacity: int = 200,
    active: bool = True,
) -> None:
    """Add the collector, or change them (same agent id); the team is made if new."""
    agent_id = check_text("agent_id", agent_id).strip()
    if not agent_id or len(agent_id) > 64:
        raise CaseRefused("agent_id", "an agent id has 1 to 64 characters")
    try:
        level = Seniority(seniority)
    except ValueError:
        known = ", ".join(s.value for s in Seniority)
        raise CaseRefused("seniority", f"{seniority!r} is not one of {known}") from None
    if capacity < 0:
        raise CaseRefused("capacity", f"{capacity} is negative")
    values: dict[str, Any] = {
        "name": check_text("name", name or agent_id)[:200],
        "seniority": level.value,
        "languages": sorted({check_text("languages", x) for x in languages}),
        "skills": sorted({check_text("skills", x) for x in skills}),
        "capacity": capacity,
        "active": active,
        "updated_at": now,
    }
    try:
        with store.begin() as conn:
            values["team_id"] = None if team is None else _team_id(conn, tenant_id, team, now, True)
            done = conn.execute(
                update(Collector)
                .where(Collector.tenant_id == tenant_id, Collector.agent_id == agent_id)
                .values(**values)
            ).rowcount
            if not done:
                conn.execute(
                    insert(Collector).values(
                        tenant_id=tenant_id, agent_id=agent_id, created_at=now, **values
                    )
                )
    except SQLAlchemyError as exc:
        raise _fail(f"collector {agent_id!r}", exc) from exc


def _open_loads(conn: Connection, tenant_id: int) -> dict[str, int]:
    rows = conn.execute(
        select(Case.agent_id, func.count())
        .where(
            Case.tenant_id == tenant_id,
            Case.agent_id.is_not(None),
            Case.status.in_(OPEN_STATUSES),
        )
        .group_by(Case.agent_id)
    )
    return {str(a): int(n) for a, n in rows}


def _teams(conn: Connection, tenant_id: int) -> dict[int, str]:
    return dict(conn.execute(select(Team.id, Team.name).where(Team.tenant_id == tenant_id)).all())


def list_collectors(store: Store, tenant_id: int) -> list[CollectorView]:
    with store.begin() as conn:
        teams = _teams(conn, tenant_id)
        loads = _open_loads(conn, tenant_id)
        rows = conn.execute(
            select(Collector).where(Collector.tenant_id == tenant_id).order_by(Collector.agent_id)
        ).all()
    return [
        CollectorView(
            r.agent_id,
            r.name,
            teams.get(r.team_id) if r.team_id is not None else None,
            r.seniority,
            tuple(r.languages),
            tuple(r.skills),
            r.capacity,
            r.active,
            loads.get(r.agent_id, 0),
        )
        for r in rows
    ]


def _roster(conn: Connection, tenant_id: int, teams: Mapping[int, str]) -> Roster:
    collectors = [
        CollectorInfo(
            agent_id=r.agent_id,
            team=teams.get(r.team_id) if r.team_id is not None else None,
            seniority=Seniority(r.seniority),
            languages=frozenset(r.languages),
            skills=frozenset(r.skills),
            capacity=r.capacity,
            active=r.active,
        )
        for r in conn.execute(select(Collector).where(Collector.tenant_id == tenant_id))
    ]
    return Roster.of(collectors, _open_loads(conn, tenant_id))


# ----- the tenant's rules -----


def save_rules(
    store: Store,
    tenant_id: int,
    rules: AssignmentRules,
    source: str,
    actor: Actor,
    now: datetime,
) -> None:
    """Keep `rules` as the tenant's (checked against its teams, collectors and campaigns)."""
    document = rules.model_dump(mode="json", exclude_defaults=True)
    try:
        with store.begin() as conn:
            check_references(conn, tenant_id, rules, source)
            values = {
                "rules": document,
                "source": source[:500],
                "updated_by": str(actor),
                "updated_at": now,
            }
            done = conn.execute(
                update(AssignmentRuleSet)
                .where(AssignmentRuleSet.tenant_id == tenant_id)
                .values(**values)
            ).rowcount
            if not done:
                conn.execute(insert(AssignmentRuleSet).values(tenant_id=tenant_id, **values))
    except SQLAlchemyError as exc:
        raise _fail("saving assignment rules", exc) from exc


def saved_rules(store: Store, tenant_id: int) -> AssignmentRules | None:
    with store.begin() as conn:
        found = conn.execute(
            select(AssignmentRuleSet.rules, AssignmentRuleSet.source).where(
                AssignmentRuleSet.tenant_id == tenant_id
            )
        ).first()
    if found is None:
        return None
    return rules_from_mapping(found.rules, f"saved rules (from {found.source})")


def check_references(conn: Connection, tenant_id: int, rules: AssignmentRules, source: str) -> None:
    """ConfigFileError naming each rule key whose team, collector or campaign the tenant lacks."""
    teams = set(_teams(conn, tenant_id).values())
    agents = set(
        conn.execute(select(Collector.agent_id).where(Collector.tenant_id == tenant_id)).scalars()
    )
    campaigns = set(
        conn.execute(select(Campaign.name).where(Campaign.tenant_id == tenant_id)).scalars()
    )
    problems: list[str] = []
    for i, rule in enumerate(rules.rules):
        where = f"rules[{i}]"
        if rule.team is not None and rule.team not in teams:
            known = ", ".join(sorted(teams)) or "none yet"
            problems.append(f"{where}.team: no team {rule.team!r} (teams: {known})")
        if rule.collector not in (None, AUTO, NONE) and rule.collector not in agents:
            problems.append(f"{where}.collector: no collector {rule.collector!r}")
        if rule.campaign not in (None, NONE) and rule.campaign not in campaigns:
            problems.append(f"{where}.campaign: no campaign {rule.campaign!r}")
    if problems:
        raise ConfigFileError(source, problems)


# ----- the run -----


@dataclass
class AssignmentReport:
    dry_run: bool
    cases: int = 0
    moved: int = 0
    stayed: int = 0
    unmatched: int = 0
    # Cases a rule wanted with a collector but none qualified with room: in the team's queue.
    queued_no_room: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    # The first KEEP_MOVES moves, in the order decided (every one of them was counted).
    moves: list[Decision] = field(default_factory=list)
    loads: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _chunks(ids: Sequence[int], size: int = _IN_CHUNK) -> Iterator[Sequence[int]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _by_debtor(conn: Connection, query: Any, column: Any, debtor_ids: Sequence[int]) -> list[Any]:
    """Rows of `query` for these debtors: by id range when the ids are dense (as the import
    makes them), else in chunks of ids."""
    lo, hi = min(debtor_ids), max(debtor_ids)
    if hi - lo < 4 * len(debtor_ids) + 100:
        return list(conn.execute(query.where(column.between(lo, hi))).all())
    rows: list[Any] = []
    for chunk in _chunks(debtor_ids):
        rows += conn.execute(query.where(column.in_(chunk))).all()
    return rows


def _facts(
    conn: Connection,
    tenant_id: int,
    after: int,
    limit: int,
    rules: AssignmentRules,
    teams: Mapping[int, str],
    opened_at: datetime | None,
) -> list[tuple[CaseFacts, int]]:
    """The next `limit` cases after id `after`, as facts (with their debtor ids)."""
    # Only worked cases are placed: a paid or closed case keeps where it ended.
    where = [Case.tenant_id == tenant_id, Case.id > after, Case.status.in_(OPEN_STATUSES)]
    if opened_at is not None:
        where.append(Case.created_at == opened_at)
    cases = conn.execute(
        select(
            Case.id,
            Case.debtor_id,
            Case.status,
            Case.agent_id,
            Case.team_id,
            Case.assigned_campaign,
            Case.risk_band,
            Case.agent_pinned,
        )
        .where(*where)
        .order_by(Case.id)
        .limit(limit)
    ).all()
    if not cases:
        return []
    debtor_ids = [c.debtor_id for c in cases]
    debts = {
        r[0]: tuple(r)
        for r in _by_debtor(
            conn,
            select(
                Debt.debtor_id,
                func.max(Debt.days_past_due).label("dpd"),
                func.sum(Debt.balance).label("balance"),
                func.max(Debt.risk_score).label("risk"),
                func.min(Debt.product).label("product"),
            )
            .where(Debt.tenant_id == tenant_id)
            .group_by(Debt.debtor_id),
            Debt.debtor_id,
            debtor_ids,
        )
    }
    places = {
        r[0]: tuple(r)
        for r in _by_debtor(
            conn,
            select(
                Address.debtor_id,
                func.min(Address.region).label("region"),
                func.min(Address.country).label("country"),
            )
            .where(Address.tenant_id == tenant_id)
            .group_by(Address.debtor_id),
            Address.debtor_id,
            debtor_ids,
        )
    }
    # Plain tuples from here: a million cases a night make attribute access on rows count.
    no_debt = (None, 0, 0, None, None)
    no_place = (None, None, None)
    band_of = rules.band_of_imported
    out: list[tuple[CaseFacts, int]] = []
    for case_id, debtor_id, status, agent_id, team_id, campaign, stored_band, pinned in cases:
        _, dpd, balance, risk, product = debts.get(debtor_id, no_debt)
        _, region, country = places.get(debtor_id, no_place)
        facts = CaseFacts(
            case_id,
            status,
            int(dpd or 0),
            float(balance or 0),
            RiskBand(stored_band) if stored_band else band_of(risk),
            region,
            product,
            "zh-CN" if country == "CN" else "en",  # as language_of
            teams.get(team_id) if team_id is not None else None,
            agent_id,
            campaign,
            bool(pinned),
        )
        out.append((facts, debtor_id))
    return out


def run_assignment(
    store: Store,
    tenant_id: int,
    rules: AssignmentRules,
    now: datetime,
    *,
    source: str = "rules",
    actor: Actor | None = None,
    dry_run: bool = False,
    opened_at: datetime | None = None,
    batch: int = BATCH,
    keep_moves: int = KEEP_MOVES,
) -> AssignmentReport:
    """Apply `rules` to the tenant's cases (only those opened at `opened_at` when given: the
    cases an import just opened). Each batch of moves is written in one transaction with a
    history row per changed field; a dry run reads and decides the same and writes nothing."""
    actor = actor or Actor.system("assign")
    started = time.perf_counter()
    report = AssignmentReport(dry_run=dry_run)
    try:
        with store.begin() as conn:
            check_references(conn, tenant_id, rules, source)
            teams = _teams(conn, tenant_id)
            roster = _roster(conn, tenant_id, teams)
        team_ids = {name: tid for tid, name in teams.items()}
        after = 0
        while True:
            with store.begin() as conn:
                facts = _facts(conn, tenant_id, after, batch, rules, teams, opened_at)
                if not facts:
                    break
                after = facts[-1][0].case_id
                moves: list[Decision] = []
                for case, _debtor in facts:
                    decision = decide(rules, roster, case)
                    _count(report, decision, keep_moves)
                    if decision.moved:
                        moves.append(decision)
                if moves and not dry_run:
                    _write(conn, tenant_id, moves, team_ids, actor, now)
    except SQLAlchemyError as exc:
        raise _fail("assignment run", exc) from exc
    report.loads = dict(sorted(roster.load.items()))
    report.seconds = time.perf_counter() - started
    log.info(
        "= assignment%s for tenant %s: %d cases, %d moved, %d stayed, %d unmatched in %.1f s",
        " (dry run)" if dry_run else "",
        tenant_id,
        report.cases,
        report.moved,
        report.stayed,
        report.unmatched,
        report.seconds,
    )
    return report


def _count(report: AssignmentReport, decision: Decision, keep_moves: int) -> None:
    report.cases += 1
    if decision.rule is None:
        report.unmatched += 1
        return
    report.by_rule[decision.rule] += 1
    if decision.no_room:
        report.queued_no_room += 1
    if not decision.moved:
        report.stayed += 1
        return
    report.moved += 1
    if len(report.moves) < keep_moves:
        report.moves.append(decision)


def _write(
    conn: Connection,
    tenant_id: int,
    moves: Sequence[Decision],
    team_ids: Mapping[str, int],
    actor: Actor,
    now: datetime,
) -> None:
    case_rows = [
        {
            "_id": m.case_id,
            "_team": team_ids[m.new_team] if m.new_team is not None else None,
            "_agent": m.new_agent,
            "_campaign": m.new_campaign,
            "_rule": m.rule,
            # A case the rules took from the collector it was given to by hand is theirs now.
            "_kept": m.old_agent == m.new_agent,
        }
        for m in moves
    ]
    history: list[dict[str, Any]] = []
    who = str(actor)
    for m in moves:
        why = "; ".join(m.reasons)[:_MAX_HISTORY_REASON]
        for name, old, new in (
            ("team", m.old_team, m.new_team),
            ("agent", m.old_agent, m.new_agent),
            ("campaign", m.old_campaign, m.new_campaign),
        ):
            if old != new:
                history.append(
                    {
                        "tenant_id": tenant_id,
                        "case_id": m.case_id,
                        "field": name,
                        "old_value": old,
                        "new_value": new,
                        "actor": who,
                        "reason": why,
                        "at": now,
                    }
                )
    if conn.dialect.name == "postgresql":
        _write_pg(conn, case_rows, history, now)
        return
    conn.execute(
        update(Case)
        .where(Case.id == bindparam("_id"))
        .values(
            team_id=bindparam("_team"),
            agent_id=bindparam("_agent"),
            assigned_campaign=bindparam("_campaign"),
            assignment_rule=bindparam("_rule"),
            assigned_at=now,
            agent_pinned=Case.agent_pinned & bindparam("_kept", type_=Boolean),
        ),
        case_rows,
    )
    conn.execute(insert(CaseHistory), history)


def _write_pg(
    conn: Connection,
    case_rows: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    now: datetime,
) -> None:
    """One UPDATE and one INSERT per batch over arrays: a row-by-row executemany is several
    times slower for a nightly run over a million cases."""
    conn.execute(
        text(
            "UPDATE cases SET team_id = m.team_id, agent_id = m.agent_id,"
            " assigned_campaign = m.campaign, assignment_rule = m.rule, assigned_at = :now,"
            " agent_pinned = cases.agent_pinned AND m.kept"
            " FROM unnest(CAST(:ids AS integer[]), CAST(:teams AS integer[]),"
            " CAST(:agents AS varchar[]), CAST(:campaigns AS varchar[]),"
            " CAST(:rules AS varchar[]), CAST(:kept AS boolean[]))"
            " AS m(id, team_id, agent_id, campaign, rule, kept)"
            " WHERE cases.id = m.id"
        ),
        {
            "ids": [r["_id"] for r in case_rows],
            "teams": [r["_team"] for r in case_rows],
            "agents": [r["_agent"] for r in case_rows],
            "campaigns": [r["_campaign"] for r in case_rows],
            "rules": [r["_rule"] for r in case_rows],
            "kept": [r["_kept"] for r in case_rows],
            "now": now,
        },
    )
    if not history:
        return
    # COPY: the history is the bulk of what a first run writes (a row per changed field).
    raw = conn.connection.dbapi_connection
    assert raw is not None
    columns = ("tenant_id", "case_id", "field", "old_value", "new_value", "actor", "reason")
    with (
        raw.cursor() as cursor,  # type: ignore[attr-defined]
        cursor.copy(f"COPY case_history ({', '.join(columns)}, at) FROM STDIN") as copy,
    ):
        for h in history:
            copy.write_row((*(h[c] for c in columns), now))


def give_case(
    store: Store,
    tenant_id: int,
    case_id: int,
    agent_id: str | None,
    actor: Actor,
    why: str,
    now: datetime,
    *,
    keep: bool = True,
) -> None:
    """A manager gives the case to a collector (None: back to the team's queue); with `keep`
    the nightly rules leave it there while that collector works cases. CaseRefused naming
    `agent_id` for someone who is not an active collector of the tenant."""
    if agent_id is not None:
        with store.begin() as conn:
            active = conn.execute(
                select(Collector.active).where(
                    Collector.tenant_id == tenant_id, Collector.agent_id == agent_id
                )
            ).scalar()
        if active is None:
            raise CaseRefused("agent_id", f"{agent_id!r} is not one of the tenant's collectors")
        if not active:
            raise CaseRefused("agent_id", f"{agent_id!r} is not active")
    case_service.assign(store, tenant_id, case_id, agent_id, actor, why, now, keep=keep)


def assign_after_import(store: Store, tenant_id: int, opened_at: datetime) -> int | None:
    """The tenant's saved rules applied to the cases an import opened at `opened_at`; None
    when the tenant has no rules. How many cases were placed."""
    rules = saved_rules(store, tenant_id)
    if rules is None:
        return None
    report = run_assignment(
        store,
        tenant_id,
        rules,
        opened_at,
        source="saved rules",
        actor=Actor.system("import"),
        opened_at=opened_at,
        keep_moves=0,
    )
    return report.moved


__all__ = [
    "AssignmentReport",
    "CollectorView",
    "add_team",
    "assign_after_import",
    "check_references",
    "give_case",
    "language_of",
    "list_collectors",
    "run_assignment",
    "save_collector",
    "save_rules",
    "saved_rules",
]
