"""Agent shifts in the database: one open row per logged-in agent, every state change logged.

Written from the engine's row worker (never on the event loop); read back by a restarted
dialer, by the desktop (the state a reconnecting browser shows) and by reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dialer.errors import StoreError
from dialer.store.db import Store
from dialer.store.models import AgentSessionRow, AgentStateChange


@dataclass(frozen=True)
class OpenShift:
    """An agent logged in on some node, as stored."""

    id: int
    tenant_id: int
    agent_id: str
    user_id: int | None
    node_id: str
    campaign_id: int | None
    phone: str
    connect: str
    phone_call_id: str | None
    state: str
    state_since: datetime
    pause_reason: str | None
    attempt_id: int | None
    logged_in_at: datetime


@dataclass(frozen=True)
class StateChange:
    agent_id: str
    from_state: str
    to_state: str
    reason: str | None
    attempt_id: int | None
    at: datetime


def _shift(row: AgentSessionRow) -> OpenShift:
    return OpenShift(
        id=row.id,
        tenant_id=row.tenant_id,
        agent_id=row.agent_id,
        user_id=row.user_id,
        node_id=row.node_id,
        campaign_id=row.campaign_id,
        phone=row.phone,
        connect=row.connect,
        phone_call_id=row.phone_call_id,
        state=row.state,
        state_since=row.state_since,
        pause_reason=row.pause_reason,
        attempt_id=row.attempt_id,
        logged_in_at=row.logged_in_at,
    )


def open_shift(
    store: Store,
    *,
    tenant_id: int,
    agent_id: str,
    user_id: int | None,
    node_id: str,
    campaign_id: int | None,
    phone: str,
    connect: str,
    now: datetime,
) -> int:
    """Start a shift; any shift of the same agent still open is closed first (one per agent)."""
    try:
        with store.session() as session:
            for row in session.scalars(
                select(AgentSessionRow)
                .where(
                    AgentSessionRow.tenant_id == tenant_id,
                    AgentSessionRow.agent_id == agent_id,
                    AgentSessionRow.logged_out_at.is_(None),
                )
                .with_for_update()
            ):
                _close(session, row, now, "taken_over")
            row = AgentSessionRow(
                tenant_id=tenant_id,
                agent_id=agent_id,
                user_id=user_id,
                node_id=node_id,
                campaign_id=campaign_id,
                phone=phone,
                connect=connect,
                state="logged_out",
                state_since=now,
                logged_in_at=now,
            )
            session.add(row)
            session.flush()
            return int(row.id)
    except SQLAlchemyError as exc:
        raise StoreError(f"agent {agent_id}: shift not stored: {exc}") from exc


def _close(session: Session, row: AgentSessionRow, now: datetime, reason: str) -> None:
    if row.state != "logged_out":
        session.add(
            AgentStateChange(
                tenant_id=row.tenant_id,
                session_id=row.id,
                agent_id=row.agent_id,
                from_state=row.state,
                to_state="logged_out",
                reason=reason,
                attempt_id=row.attempt_id,
                at=now,
            )
        )
    row.state = "logged_out"
    row.state_since = now
    row.logged_out_at = now


def record_change(
    store: Store,
    shift_id: int,
    change: StateChange,
    *,
    phone_call_id: str | None = None,
) -> None:
    """Store one state change and the shift's state now (a logout closes the shift)."""
    values: dict[str, object] = {
        "state": change.to_state,
        "state_since": change.at,
        "pause_reason": change.reason if change.to_state == "paused" else None,
        "attempt_id": change.attempt_id,
    }
    if change.to_state == "logged_out":
        values["logged_out_at"] = change.at
    if phone_call_id is not None:
        values["phone_call_id"] = phone_call_id
    try:
        with store.begin() as conn:
            tenant_id = conn.execute(
                select(AgentSessionRow.tenant_id).where(AgentSessionRow.id == shift_id)
            ).scalar()
            if tenant_id is None:
                raise StoreError(f"agent shift {shift_id} does not exist")
            conn.execute(
                update(AgentSessionRow).where(AgentSessionRow.id == shift_id).values(values)
            )
            if change.from_state != change.to_state:
                conn.execute(
                    insert(AgentStateChange).values(
                        tenant_id=tenant_id,
                        session_id=shift_id,
                        agent_id=change.agent_id,
                        from_state=change.from_state,
                        to_state=change.to_state,
                        reason=change.reason,
                        attempt_id=change.attempt_id,
                        at=change.at,
                    )
                )
    except SQLAlchemyError as exc:
        raise StoreError(f"agent {change.agent_id}: state change not stored: {exc}") from exc


def set_phone_call(store: Store, shift_id: int, phone_call_id: str | None) -> None:
    try:
        with store.begin() as conn:
            conn.execute(
                update(AgentSessionRow)
                .where(AgentSessionRow.id == shift_id)
                .values(phone_call_id=phone_call_id)
            )
    except SQLAlchemyError as exc:
        raise StoreError(f"agent shift {shift_id}: phone call not stored: {exc}") from exc


def open_shifts(
    store: Store,
    tenant_id: int,
    *,
    node_id: str | None = None,
    agent_id: str | None = None,
) -> list[OpenShift]:
    query = select(AgentSessionRow).where(
        AgentSessionRow.tenant_id == tenant_id, AgentSessionRow.logged_out_at.is_(None)
    )
    if node_id is not None:
        query = query.where(AgentSessionRow.node_id == node_id)
    if agent_id is not None:
        query = query.where(AgentSessionRow.agent_id == agent_id)
    try:
        with store.session() as session:
            return [_shift(r) for r in session.scalars(query.order_by(AgentSessionRow.id))]
    except SQLAlchemyError as exc:
        raise StoreError(f"agent shifts not read: {exc}") from exc


def state_changes(store: Store, tenant_id: int, agent_id: str) -> list[StateChange]:
    try:
        with store.session() as session:
            rows = session.scalars(
                select(AgentStateChange)
                .where(
                    AgentStateChange.tenant_id == tenant_id,
                    AgentStateChange.agent_id == agent_id,
                )
                .order_by(AgentStateChange.id)
            )
            return [
                StateChange(r.agent_id, r.from_state, r.to_state, r.reason, r.attempt_id, r.at)
                for r in rows
            ]
    except SQLAlchemyError as exc:
        raise StoreError(f"agent {agent_id}: state changes not read: {exc}") from exc
