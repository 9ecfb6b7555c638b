"""Campaign settings a supervisor changes while a campaign runs, and saved pacing statistics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import Campaign, PacingSnapshot

# Keys of campaigns.settings["pacing"] that `dialer campaign set` may write.
OVERRIDE_KEYS = ("target_abandon_rate", "max_dial_ratio", "dial_mode", "paused")


@dataclass(frozen=True)
class CampaignRef:
    id: int
    tenant_id: int
    name: str
    dial_mode: str


@dataclass(frozen=True)
class PacingOverrides:
    """Supervisor overrides; None leaves the configured value. `revision` grows on each change."""

    revision: int = 0
    target_abandon_rate: float | None = None
    max_dial_ratio: float | None = None
    dial_mode: str | None = None
    paused: bool | None = None


def find_campaign(store: Store, name: str, tenant_id: int | None = None) -> CampaignRef | None:
    query = select(Campaign.id, Campaign.tenant_id, Campaign.name, Campaign.dial_mode).where(
        Campaign.name == name
    )
    if tenant_id is not None:
        query = query.where(Campaign.tenant_id == tenant_id)
    try:
        with store.begin() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"campaign {name!r}: {error_reason(exc)}") from exc
    if len(rows) > 1:
        raise StoreError(f"campaign {name!r} exists in several tenants; name the tenant")
    return CampaignRef(*rows[0]) if rows else None


def pacing_overrides(store: Store, campaign_id: int) -> PacingOverrides:
    with store.begin() as conn:
        settings = conn.execute(
            select(Campaign.settings).where(Campaign.id == campaign_id)
        ).scalar_one_or_none()
    pacing: dict[str, Any] = dict((settings or {}).get("pacing") or {})
    return PacingOverrides(
        revision=int(pacing.get("revision", 0)),
        **{k: pacing[k] for k in OVERRIDE_KEYS if pacing.get(k) is not None},
    )


def set_pacing_overrides(
    store: Store, campaign_id: int, changes: dict[str, Any]
) -> PacingOverrides:
    """Merge `changes` into the campaign's overrides atomically; the running engine picks them
    up on its next tick."""
    unknown = set(changes) - set(OVERRIDE_KEYS)
    if unknown:
        raise StoreError(f"unknown pacing setting(s): {', '.join(sorted(unknown))}")
    try:
        with store.begin() as conn:
            # Row lock on PostgreSQL; SQLite serialises writers anyway.
            settings = conn.execute(
                select(Campaign.settings).where(Campaign.id == campaign_id).with_for_update()
            ).scalar_one()
            merged = dict(settings or {})
            pacing = dict(merged.get("pacing") or {})
            pacing.update({k: v for k, v in changes.items() if v is not None})
            pacing["revision"] = int(pacing.get("revision", 0)) + 1
            merged["pacing"] = pacing
            conn.execute(update(Campaign).where(Campaign.id == campaign_id).values(settings=merged))
    except SQLAlchemyError as exc:
        raise StoreError(f"campaign {campaign_id}: {error_reason(exc)}") from exc
    return pacing_overrides(store, campaign_id)


def save_pacing_snapshot(store: Store, campaign_id: int, tenant_id: int, snapshot: str) -> None:
    now = datetime.now(UTC)
    with store.begin() as conn:
        done = conn.execute(
            update(PacingSnapshot)
            .where(PacingSnapshot.campaign_id == campaign_id)
            .values(snapshot=snapshot, updated_at=now)
        ).rowcount
        if not done:
            conn.execute(
                insert(PacingSnapshot).values(
                    campaign_id=campaign_id, tenant_id=tenant_id, snapshot=snapshot, updated_at=now
                )
            )


def load_pacing_snapshot(store: Store, campaign_id: int) -> str | None:
    with store.begin() as conn:
        found: str | None = conn.execute(
            select(PacingSnapshot.snapshot).where(PacingSnapshot.campaign_id == campaign_id)
        ).scalar_one_or_none()
    return found
