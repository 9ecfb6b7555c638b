"""What the console reads from the store: abandonment over today, 24 hours and 30 days.

The definition is the one `dialer.store.attempts.campaign_totals` and the run summary use:
attempts flagged `abandoned` over live answers (outcome `answered`; machines are not counted),
the FCC / Ofcom rate. Here it is counted per window, by answer time (as the pacer's ledger
counts), all three windows in one statement over the last 30 days of the campaign's attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from dialer.calls.models import Outcome
from dialer.errors import StoreError
from dialer.store.campaigns import CampaignRef
from dialer.store.db import Store, error_reason
from dialer.store.models import CallAttempt, Campaign

DAY = timedelta(days=1)
MONTH = timedelta(days=30)


@dataclass(frozen=True)
class WindowTotals:
    """Live answers and abandoned calls answered within one window."""

    answered: int
    abandoned: int

    @property
    def rate(self) -> float | None:
        """Abandoned over live answers; None with no live answer (nothing to be a share of)."""
        return self.abandoned / self.answered if self.answered else None


@dataclass(frozen=True)
class AbandonTotals:
    """The three windows a supervisor (and a regulator) looks at, as of `at`."""

    at: datetime
    today: WindowTotals  # since the campaign's local midnight
    last_24h: WindowTotals
    last_30d: WindowTotals


def local_day_start(now: datetime, tz: tzinfo) -> datetime:
    """The start of `now`'s day in `tz` (its local midnight), as an aware UTC datetime.

    Where a zone skips midnight (DST starting at 00:00) the day starts when the clocks jump;
    where midnight happens twice, at the first one (`zoneinfo`'s fold=0 gives both).
    """
    _need_aware(now)
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0), tzinfo=tz).astimezone(UTC)


def _need_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now.isoformat()}: pass a timezone-aware value")


def abandon_totals(
    store: Store, tenant_id: int, campaign_id: int, *, now: datetime, tz: tzinfo
) -> AbandonTotals:
    """Abandonment of the campaign today (local to `tz`), over 24 hours and over 30 days.

    One statement; it reads the campaign's attempts answered in the last 30 days (an index on
    call_attempts (campaign_id, answered_at) keeps that cheap on a long-running campaign).
    """
    _need_aware(now)
    now = now.astimezone(UTC)
    a = CallAttempt
    live = a.outcome == Outcome.ANSWERED.value
    # The same counting as campaign_totals: `abandoned` flags over `answered` outcomes.
    abandoned = a.abandoned.is_(True)

    def window(since: datetime) -> tuple[Any, Any]:
        inside = a.answered_at >= since
        return (
            func.coalesce(func.sum(case((and_(inside, live), 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(inside, abandoned), 1), else_=0)), 0),
        )

    since_month = now - MONTH
    query = select(
        *window(local_day_start(now, tz)), *window(now - DAY), *window(since_month)
    ).where(
        a.tenant_id == tenant_id,
        a.campaign_id == campaign_id,
        a.answered_at >= since_month,
        a.answered_at <= now,
    )
    try:
        with store.begin() as conn:
            row = conn.execute(query).one()
    except SQLAlchemyError as exc:
        raise StoreError(f"abandonment of campaign {campaign_id}: {error_reason(exc)}") from exc
    counts = [int(v) for v in row]
    return AbandonTotals(
        at=now,
        today=WindowTotals(counts[0], counts[1]),
        last_24h=WindowTotals(counts[2], counts[3]),
        last_30d=WindowTotals(counts[4], counts[5]),
    )


def campaign_in_tenant(store: Store, tenant_id: int, campaign_id: int) -> CampaignRef | None:
    """The campaign if it belongs to the tenant; None otherwise (the two cases look alike)."""
    query = select(Campaign.id, Campaign.tenant_id, Campaign.name, Campaign.dial_mode).where(
        Campaign.id == campaign_id, Campaign.tenant_id == tenant_id
    )
    try:
        with store.begin() as conn:
            row = conn.execute(query).first()
    except SQLAlchemyError as exc:
        raise StoreError(f"campaign {campaign_id}: {error_reason(exc)}") from exc
    return CampaignRef(*row) if row is not None else None


def tenant_campaigns(store: Store, tenant_id: int) -> list[CampaignRef]:
    """The tenant's campaigns, by name (what the console shows a card for)."""
    query = (
        select(Campaign.id, Campaign.tenant_id, Campaign.name, Campaign.dial_mode)
        .where(Campaign.tenant_id == tenant_id)
        .order_by(Campaign.name, Campaign.id)
    )
    try:
        with store.begin() as conn:
            return [CampaignRef(*row) for row in conn.execute(query).all()]
    except SQLAlchemyError as exc:
        raise StoreError(f"campaigns of tenant {tenant_id}: {error_reason(exc)}") from exc
