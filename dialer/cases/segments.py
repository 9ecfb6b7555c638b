"""Segments: saved, validated filters over a tenant's cases, and the call lists campaigns load
from them (the hopper then dials exactly the debtors of the segment's cases)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from dialer.cases.config_files import check_ranges, validate
from dialer.cases.errors import CaseError, CaseRefused, check_text
from dialer.cases.models import Actor
from dialer.cases.scoring import RiskBand
from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import (
    Address,
    Campaign,
    CampaignListEntry,
    CampaignSegment,
    Case,
    Debt,
    Debtor,
    Segment,
    Team,
)

__all__ = [
    "SegmentFilter",
    "SegmentPreview",
    "SegmentView",
    "detach_campaign",
    "filter_from_mapping",
    "get_segment",
    "list_segments",
    "load_campaign_list",
    "preview",
    "refresh_campaign_lists",
    "save_segment",
    "segment_cases",
]

log = logging.getLogger(__name__)

StatusName = Literal[
    "new",
    "in_progress",
    "promise_to_pay",
    "broken_promise",
    "paid",
    "settled",
    "legal",
    "closed",
]


class SegmentFilter(BaseModel):
    """Which cases: every given key must hold; lists mean "one of". Days past due and balance
    are over the case's debts (the largest days past due, the sum of balances); `risk_band`
    is the stored score's; `language` is zh-CN for an address in China, else en; `campaign`
    the dialer campaign an assignment rule gave the case to; `strategy`/`strategy_step` where
    the strategy run has it; `queued_for` the campaign whose call step queued it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: list[StatusName] | None = None
    days_past_due_min: int | None = Field(default=None, ge=0)
    days_past_due_max: int | None = Field(default=None, ge=0)
    balance_min: float | None = Field(default=None, ge=0)
    balance_max: float | None = Field(default=None, ge=0)
    risk_band: list[RiskBand] | None = None
    region: list[str] | None = None
    product: list[str] | None = None
    language: list[Literal["en", "zh-CN"]] | None = None
    team: list[str] | None = None
    collector: list[str] | None = None
    unassigned: bool | None = None
    campaign: str | None = None
    strategy: list[str] | None = None
    strategy_step: list[int] | None = None
    queued_for: str | None = None

    @model_validator(mode="after")
    def _ranges(self) -> SegmentFilter:
        check_ranges(self)
        if self.unassigned and self.collector:
            raise ValueError("'unassigned' and 'collector' exclude each other")
        return self


def filter_from_mapping(data: Mapping[str, object], source: str) -> SegmentFilter:
    """The filter, checked; ConfigFileError names `source` and each key at fault."""
    return validate(SegmentFilter, data, source)


def segment_cases(tenant_id: int, f: SegmentFilter) -> Select[int, int]:
    """The tenant's cases the filter selects, as (case id, debtor id), by case id."""
    where: list[ColumnElement[bool]] = [Case.tenant_id == tenant_id]
    if f.status is not None:
        where.append(Case.status.in_(f.status))
    owed: list[ColumnElement[bool]] = []
    if f.days_past_due_min is not None:
        owed.append(func.max(Debt.days_past_due) >= f.days_past_due_min)
    if f.days_past_due_max is not None:
        owed.append(func.max(Debt.days_past_due) <= f.days_past_due_max)
    if f.balance_min is not None:
        owed.append(func.sum(Debt.balance) >= Decimal(str(f.balance_min)))
    if f.balance_max is not None:
        owed.append(func.sum(Debt.balance) <= Decimal(str(f.balance_max)))
    if owed:
        where.append(
            Case.debtor_id.in_(
                select(Debt.debtor_id)
                .where(Debt.tenant_id == tenant_id)
                .group_by(Debt.debtor_id)
                .having(*owed)
            )
        )
    if f.product is not None:
        where.append(
            Case.debtor_id.in_(
                select(Debt.debtor_id).where(
                    Debt.tenant_id == tenant_id, Debt.product.in_(f.product)
                )
            )
        )
    if f.risk_band is not None:
        where.append(Case.risk_band.in_([b.value for b in f.risk_band]))
    if f.region is not None:
        where.append(
            Case.debtor_id.in_(
                select(Address.debtor_id).where(
                    Address.tenant_id == tenant_id, Address.region.in_(f.region)
                )
            )
        )
    if f.language is not None and set(f.language) != {"en", "zh-CN"}:
        in_china = Case.debtor_id.in_(
            select(Address.debtor_id).where(Address.tenant_id == tenant_id, Address.country == "CN")
        )
        where.append(in_china if f.language == ["zh-CN"] else ~in_china)
    if f.team is not None:
        where.append(
            Case.team_id.in_(
                select(Team.id).where(Team.tenant_id == tenant_id, Team.name.in_(f.team))
            )
        )
    if f.collector is not None:
        where.append(Case.agent_id.in_(f.collector))
    if f.unassigned is not None:
        where.append(Case.agent_id.is_(None) if f.unassigned else Case.agent_id.is_not(None))
    if f.campaign is not None:
        where.append(Case.assigned_campaign == f.campaign)
    if f.strategy is not None:
        where.append(Case.strategy.in_(f.strategy))
    if f.strategy_step is not None:
        where.append(Case.strategy_step.in_(f.strategy_step))
    if f.queued_for is not None:
        where.append(Case.queued_campaign == f.queued_for)
    return select(Case.id, Case.debtor_id).where(*where).order_by(Case.id)


# ----- saved segments -----


@dataclass(frozen=True)
class SegmentView:
    id: int
    name: str
    description: str
    filter: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SampleCase:
    case_id: int
    debtor_external_id: str
    debtor_name: str
    status: str
    agent_id: str | None


@dataclass(frozen=True)
class SegmentPreview:
    count: int
    sample: tuple[SampleCase, ...]


def _fail(what: str, exc: SQLAlchemyError) -> StoreError:
    return StoreError(f"{what}: {error_reason(exc)}")


def _view(row: Any) -> SegmentView:
    return SegmentView(
        row.id,
        row.name,
        row.description,
        dict(row.filter),
        row.created_by,
        row.created_at,
        row.updated_at,
    )


def save_segment(
    store: Store,
    tenant_id: int,
    name: str,
    filter_document: Mapping[str, object],
    actor: Actor,
    now: datetime,
    *,
    description: str = "",
) -> SegmentView:
    """Add the segment, or replace the filter of the one with this name."""
    name = check_text("name", name).strip()
    if not name or len(name) > 64:
        raise CaseRefused("name", "a segment's name has 1 to 64 characters")
    checked = filter_from_mapping(filter_document, f"segment {name}")
    document = checked.model_dump(mode="json", exclude_none=True)
    description = check_text("description", description)
    try:
        with store.begin() as conn:
            done = conn.execute(
                update(Segment)
                .where(Segment.tenant_id == tenant_id, Segment.name == name)
                .values(filter=document, description=description, updated_at=now)
            ).rowcount
            if not done:
                conn.execute(
                    insert(Segment).values(
                        tenant_id=tenant_id,
                        name=name,
                        description=description,
                        filter=document,
                        created_by=str(actor),
                        created_at=now,
                        updated_at=now,
                    )
                )
            return _view(_segment_row(conn, tenant_id, name))
    except SQLAlchemyError as exc:
        raise _fail(f"segment {name!r}", exc) from exc


def _segment_row(conn: Connection, tenant_id: int, name: str) -> Any:
    found = conn.execute(
        select(Segment).where(Segment.tenant_id == tenant_id, Segment.name == name)
    ).first()
    if found is None:
        raise CaseError(f"no segment {name!r}")
    return found


def get_segment(store: Store, tenant_id: int, name: str) -> SegmentView:
    with store.begin() as conn:
        return _view(_segment_row(conn, tenant_id, name))


def segment_debtor_ids(store: Store, tenant_id: int, name: str) -> list[int]:
    """The debtors of the cases the saved segment `name` selects now, by case id; CaseError
    when the tenant has no such segment."""
    with store.begin() as conn:
        saved = _view(_segment_row(conn, tenant_id, name))
        chosen = SegmentFilter.model_validate(saved.filter)
        rows = conn.execute(segment_cases(tenant_id, chosen)).all()
    return [int(debtor_id) for _case_id, debtor_id in rows]


def list_segments(store: Store, tenant_id: int) -> list[SegmentView]:
    with store.begin() as conn:
        rows = conn.execute(
            select(Segment).where(Segment.tenant_id == tenant_id).order_by(Segment.name)
        ).all()
    return [_view(r) for r in rows]


def preview(store: Store, tenant_id: int, f: SegmentFilter, sample: int = 10) -> SegmentPreview:
    """How many cases the filter selects, and the first few of them."""
    chosen = segment_cases(tenant_id, f).subquery()
    try:
        with store.begin() as conn:
            count = int(conn.execute(select(func.count()).select_from(chosen)).scalar_one())
            rows = conn.execute(
                select(Case.id, Debtor.external_id, Debtor.full_name, Case.status, Case.agent_id)
                .join(Debtor, Debtor.id == Case.debtor_id)
                .where(Case.id.in_(select(chosen.c.id)))
                .order_by(Case.id)
                .limit(sample)
            ).all()
    except SQLAlchemyError as exc:
        raise _fail("segment preview", exc) from exc
    return SegmentPreview(count, tuple(SampleCase(*r) for r in rows))


# ----- campaigns' call lists -----


def _campaign_id(conn: Connection, tenant_id: int, name: str) -> int:
    found = conn.execute(
        select(Campaign.id).where(Campaign.tenant_id == tenant_id, Campaign.name == name)
    ).scalar()
    if found is None:
        raise CaseError(f"no campaign {name!r}")
    return int(found)


def _load(
    conn: Connection,
    tenant_id: int,
    campaign_id: int,
    segment: Any,
    actor: Actor,
    now: datetime,
) -> int:
    """`segment`: a row with the segment's id, name and filter."""
    f = filter_from_mapping(segment.filter, f"segment {segment.name}")
    conn.execute(delete(CampaignListEntry).where(CampaignListEntry.campaign_id == campaign_id))
    chosen = segment_cases(tenant_id, f).subquery()
    conn.execute(
        insert(CampaignListEntry).from_select(
            ["campaign_id", "debtor_id", "case_id"],
            select(
                literal(campaign_id, Integer),
                chosen.c.debtor_id,
                chosen.c.id,
            ),
        )
    )
    count = int(
        conn.execute(
            select(func.count()).where(CampaignListEntry.campaign_id == campaign_id)
        ).scalar_one()
    )
    values = {
        "tenant_id": tenant_id,
        "segment_id": segment.id,
        "cases": count,
        "loaded_by": str(actor),
        "loaded_at": now,
    }
    done = conn.execute(
        update(CampaignSegment).where(CampaignSegment.campaign_id == campaign_id).values(**values)
    ).rowcount
    if not done:
        conn.execute(insert(CampaignSegment).values(campaign_id=campaign_id, **values))
    return count


def load_campaign_list(
    store: Store, tenant_id: int, campaign: str, segment: str, actor: Actor, now: datetime
) -> int:
    """Replace the campaign's call list with the debtors of the segment's cases, in one
    transaction (a running hopper sees the old list or the new one). From now on the campaign
    dials only its list. How many cases are on it."""
    try:
        with store.begin() as conn:
            campaign_id = _campaign_id(conn, tenant_id, campaign)
            count = _load(
                conn, tenant_id, campaign_id, _segment_row(conn, tenant_id, segment), actor, now
            )
    except SQLAlchemyError as exc:
        raise _fail(f"call list of campaign {campaign!r}", exc) from exc
    log.info("= campaign %s list loaded from segment %s: %d cases", campaign, segment, count)
    return count


def refresh_campaign_lists(
    store: Store, tenant_id: int, actor: Actor, now: datetime
) -> dict[str, int]:
    """Reload every campaign's list from its segment (after the nightly strategy run has
    queued the day's cases): campaign name -> cases on its list."""
    out: dict[str, int] = {}
    try:
        with store.begin() as conn:
            rows = conn.execute(
                select(
                    Campaign.id.label("campaign_id"),
                    Campaign.name.label("campaign"),
                    Segment.id,
                    Segment.name,
                    Segment.filter,
                )
                .join(CampaignSegment, CampaignSegment.campaign_id == Campaign.id)
                .join(Segment, Segment.id == CampaignSegment.segment_id)
                .where(Campaign.tenant_id == tenant_id)
                .order_by(Campaign.name)
            ).all()
            for row in rows:
                out[row.campaign] = _load(conn, tenant_id, row.campaign_id, row, actor, now)
    except SQLAlchemyError as exc:
        raise _fail("refreshing call lists", exc) from exc
    return out


def detach_campaign(store: Store, tenant_id: int, campaign: str) -> None:
    """The campaign no longer draws from a segment: it dials the tenant's whole portfolio."""
    with store.begin() as conn:
        campaign_id = _campaign_id(conn, tenant_id, campaign)
        conn.execute(delete(CampaignListEntry).where(CampaignListEntry.campaign_id == campaign_id))
        conn.execute(delete(CampaignSegment).where(CampaignSegment.campaign_id == campaign_id))
