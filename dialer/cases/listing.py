"""The managers' case list: a tenant's cases filtered (status, days past due, balance, collector,
strategy, risk band, name or id) and paged in the database, one row per case with its debts
summed up."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, func, literal, or_, select
from sqlalchemy.exc import SQLAlchemyError

from dialer.cases.errors import CaseNotFound, CaseRefused
from dialer.cases.scoring import RiskBand
from dialer.cases.segments import SegmentFilter, segment_cases
from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import Case, CaseStatus, Debt, Debtor

__all__ = [
    "MAX_PAGE",
    "CaseFilter",
    "CaseLine",
    "CasePage",
    "ListOptions",
    "StrategyView",
    "list_cases",
    "strategy_view",
]

MAX_PAGE = 200
Sort = Literal["dpd", "balance", "changed", "id"]
SORTS: tuple[Sort, ...] = ("dpd", "balance", "changed", "id")


@dataclass(frozen=True)
class CaseFilter:
    """What a manager narrows the list by; every given bound must hold (inclusive)."""

    statuses: tuple[CaseStatus, ...] = ()
    dpd_min: int | None = None
    dpd_max: int | None = None
    balance_min: Decimal | None = None
    balance_max: Decimal | None = None
    # A collector's agent id; "" for cases nobody works.
    collector: str | None = None
    strategy: str | None = None
    band: str | None = None
    # Part of the debtor's name, or the debtor's (creditor's) id, or the case number.
    text: str | None = None
    # A saved segment's filter (dialer/cases/segments.py) the cases must also meet.
    segment: SegmentFilter | None = None

    def check(self) -> None:
        """CaseRefused naming the first bound that cannot hold."""
        if self.dpd_min is not None and self.dpd_max is not None and self.dpd_min > self.dpd_max:
            raise CaseRefused("dpd_max", "the highest days past due is below the lowest")
        if (
            self.balance_min is not None
            and self.balance_max is not None
            and self.balance_min > self.balance_max
        ):
            raise CaseRefused("balance_max", "the highest balance is below the lowest")


@dataclass(frozen=True)
class CaseLine:
    id: int
    debtor_id: int
    debtor_external_id: str
    debtor_name: str
    status: str
    agent_id: str | None
    status_changed_at: datetime
    balance: Decimal
    # None when the debtor owes in several currencies (the balance then adds them up).
    currency: str | None
    days_past_due: int
    debts: int
    strategy: str | None
    band: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "debtor_id": self.debtor_id,
            "debtor_external_id": self.debtor_external_id,
            "debtor_name": self.debtor_name,
            "status": self.status,
            "agent_id": self.agent_id,
            "status_changed_at": self.status_changed_at.isoformat(),
            "balance": str(self.balance),
            "currency": self.currency,
            "days_past_due": self.days_past_due,
            "debts": self.debts,
            "strategy": self.strategy,
            "band": self.band,
        }


@dataclass(frozen=True)
class CasePage:
    lines: tuple[CaseLine, ...]
    offset: int
    more: bool


@dataclass(frozen=True)
class ListOptions:
    """What the filters offer: the tenant's collectors and strategies in use."""

    statuses: tuple[str, ...]
    collectors: tuple[str, ...]
    strategies: tuple[str, ...]
    bands: tuple[str, ...]
    sorts: tuple[str, ...] = SORTS


def _owed(where: ColumnElement[bool]) -> Any:
    """Each debtor's debts summed up: balance, the most days past due, currencies, count."""
    return (
        select(
            Debt.debtor_id,
            func.sum(Debt.balance).label("balance"),
            func.max(Debt.days_past_due).label("dpd"),
            func.min(Debt.currency).label("currency"),
            func.max(Debt.currency).label("currency_max"),
            func.count().label("debts"),
        )
        .where(where)
        .group_by(Debt.debtor_id)
        .subquery("owed")
    )


def _page(tenant_id: int, f: CaseFilter, sort: Sort) -> Select[Any]:
    """The ids of the cases that meet `f`, in the list's order. The debts are summed up only
    when a bound or the order needs them, so a list by date or collector reads no debt."""
    query = select(Case.id).where(Case.tenant_id == tenant_id)
    money = sort in ("dpd", "balance") or any(
        v is not None for v in (f.dpd_min, f.dpd_max, f.balance_min, f.balance_max)
    )
    balance: ColumnElement[Any] = literal(0)
    dpd: ColumnElement[Any] = literal(0)
    if money:
        owed = _owed(Debt.tenant_id == tenant_id)
        balance = func.coalesce(owed.c.balance, 0)
        dpd = func.coalesce(owed.c.dpd, 0)
        query = query.outerjoin(owed, owed.c.debtor_id == Case.debtor_id)
    if f.statuses:
        query = query.where(Case.status.in_([s.value for s in f.statuses]))
    if f.dpd_min is not None:
        query = query.where(dpd >= f.dpd_min)
    if f.dpd_max is not None:
        query = query.where(dpd <= f.dpd_max)
    if f.balance_min is not None:
        query = query.where(balance >= f.balance_min)
    if f.balance_max is not None:
        query = query.where(balance <= f.balance_max)
    if f.collector is not None:
        query = query.where(
            Case.agent_id.is_(None) if f.collector == "" else Case.agent_id == f.collector
        )
    if f.strategy:
        query = query.where(Case.strategy == f.strategy)
    if f.band:
        query = query.where(Case.risk_band == f.band)
    if f.text:
        text = f.text.strip()
        found: list[ColumnElement[bool]] = [
            func.lower(Debtor.full_name).contains(text.lower(), autoescape=True),
            Debtor.external_id == text,
        ]
        if text.isdigit() and len(text) < 10:
            found.append(Case.id == int(text))
        query = query.join(Debtor, Debtor.id == Case.debtor_id).where(or_(*found))
    if f.segment is not None:
        chosen = segment_cases(tenant_id, f.segment).with_only_columns(Case.id).order_by(None)
        query = query.where(Case.id.in_(chosen))
    order = {
        "dpd": (dpd.desc(), Case.id.desc()),
        "balance": (balance.desc(), Case.id.desc()),
        "changed": (Case.status_changed_at.desc(), Case.id.desc()),
        "id": (Case.id.desc(),),
    }[sort]
    return query.order_by(*order)


def _lines(tenant_id: int, ids: list[int]) -> Select[Any]:
    """The listed cases with their debtors and debts summed up."""
    debtors = select(Case.debtor_id).where(Case.id.in_(ids))
    owed = _owed((Debt.tenant_id == tenant_id) & Debt.debtor_id.in_(debtors))
    return (
        select(
            Case.id,
            Case.debtor_id,
            Debtor.external_id,
            Debtor.full_name,
            Case.status,
            Case.agent_id,
            Case.status_changed_at,
            func.coalesce(owed.c.balance, 0).label("balance"),
            owed.c.currency,
            owed.c.currency_max,
            func.coalesce(owed.c.dpd, 0).label("dpd"),
            func.coalesce(owed.c.debts, 0).label("debts"),
            Case.strategy,
            Case.risk_band.label("band"),
        )
        .join(Debtor, Debtor.id == Case.debtor_id)
        .outerjoin(owed, owed.c.debtor_id == Case.debtor_id)
        .where(Case.id.in_(ids))
    )


def list_cases(
    store: Store,
    tenant_id: int,
    f: CaseFilter,
    *,
    sort: Sort = "dpd",
    limit: int = 50,
    offset: int = 0,
) -> CasePage:
    """One page of the tenant's cases that meet `f`, most overdue first by default."""
    f.check()
    if not 1 <= limit <= MAX_PAGE:
        raise CaseRefused("limit", f"a page holds 1 to {MAX_PAGE} cases")
    if offset < 0:
        raise CaseRefused("offset", "cannot be negative")
    try:
        with store.begin() as conn:
            ids = list(
                conn.execute(_page(tenant_id, f, sort).limit(limit + 1).offset(offset)).scalars()
            )
            found = {r.id: r for r in conn.execute(_lines(tenant_id, ids))} if ids else {}
    except SQLAlchemyError as exc:
        raise StoreError(f"case list: {error_reason(exc)}") from exc
    rows = [found[i] for i in ids if i in found]
    lines = tuple(
        CaseLine(
            id=r.id,
            debtor_id=r.debtor_id,
            debtor_external_id=r.external_id,
            debtor_name=r.full_name,
            status=r.status,
            agent_id=r.agent_id,
            status_changed_at=r.status_changed_at,
            balance=Decimal(r.balance),
            currency=r.currency if r.currency == r.currency_max else None,
            days_past_due=int(r.dpd),
            debts=int(r.debts),
            strategy=r.strategy,
            band=r.band,
        )
        for r in rows[:limit]
    )
    return CasePage(lines, offset, len(rows) > limit)


def list_options(store: Store, tenant_id: int) -> ListOptions:
    try:
        with store.begin() as conn:
            collectors = conn.execute(
                select(Case.agent_id)
                .where(Case.tenant_id == tenant_id, Case.agent_id.is_not(None))
                .distinct()
                .order_by(Case.agent_id)
            ).scalars()
            collected = tuple(str(c) for c in collectors)
            strategies = tuple(
                str(s)
                for s in conn.execute(
                    select(Case.strategy)
                    .where(Case.tenant_id == tenant_id, Case.strategy.is_not(None))
                    .distinct()
                    .order_by(Case.strategy)
                ).scalars()
            )
    except SQLAlchemyError as exc:
        raise StoreError(f"case list options: {error_reason(exc)}") from exc
    return ListOptions(
        statuses=tuple(s.value for s in CaseStatus),
        collectors=collected,
        strategies=strategies,
        bands=tuple(b.value for b in RiskBand),
    )


@dataclass(frozen=True)
class ScoreTerm:
    feature: str
    value: object
    points: float
    reason: str


@dataclass(frozen=True)
class StrategyView:
    """Where a case stands in its strategy and why, and its risk score term by term, as the
    nightly runs stored them (migration 0011); None fields: not run yet."""

    strategy: str | None
    step: int | None
    since: date | None
    last_run: date | None
    finished: bool
    reasons: tuple[str, ...]
    override_by: str | None
    override_why: str | None
    override_at: datetime | None
    queued_campaign: str | None
    score: float | None
    band: str | None
    terms: tuple[ScoreTerm, ...]
    scored_at: datetime | None
    score_model: str | None

    def to_json(self) -> dict[str, Any]:
        def iso(v: date | datetime | None) -> str | None:
            return None if v is None else v.isoformat()

        return {
            "strategy": self.strategy,
            "step": self.step,
            "since": iso(self.since),
            "last_run": iso(self.last_run),
            "finished": self.finished,
            "reasons": list(self.reasons),
            "override": None
            if self.override_by is None
            else {"by": self.override_by, "why": self.override_why, "at": iso(self.override_at)},
            "queued_campaign": self.queued_campaign,
            "score": None
            if self.score is None
            else {
                "value": self.score,
                "band": self.band,
                "terms": [t.__dict__ for t in self.terms],
                "scored_at": iso(self.scored_at),
                "model": self.score_model,
            },
        }


def _json_list(text: str | None) -> list[Any]:
    # Written by the nightly runs; a row they never wrote (or an unreadable one) shows nothing.
    if not text:
        return []
    try:
        found = json.loads(text)
    except ValueError:
        return []
    return found if isinstance(found, list) else []


def strategy_view(store: Store, tenant_id: int, case_id: int) -> StrategyView:
    """CaseNotFound when the tenant has no such case."""
    try:
        with store.begin() as conn:
            row = conn.execute(
                select(Case.__table__).where(Case.id == case_id, Case.tenant_id == tenant_id)
            ).first()
    except SQLAlchemyError as exc:
        raise StoreError(f"strategy of case {case_id}: {error_reason(exc)}") from exc
    if row is None:
        raise CaseNotFound(case_id)
    terms = tuple(
        ScoreTerm(str(t[0]), t[1], float(t[2]), str(t[3]))
        for t in _json_list(row.risk_terms)
        if isinstance(t, list) and len(t) >= 4
    )
    return StrategyView(
        strategy=row.strategy,
        step=row.strategy_step,
        since=row.strategy_since,
        last_run=row.strategy_last_run,
        finished=bool(row.strategy_finished),
        reasons=tuple(str(r) for r in _json_list(row.strategy_reasons)),
        override_by=row.override_by,
        override_why=row.override_why,
        override_at=row.override_at,
        queued_campaign=row.queued_campaign,
        score=row.risk_score,
        band=row.risk_band,
        terms=terms,
        scored_at=row.scored_at,
        score_model=row.score_model,
    )
