"""The case's whole contact history as one timeline, merged from one source per kind of fact.

A source is a function `(conn, case, limit) -> entries` returning that kind's newest `limit`
entries; the timeline is the merge of every source's, oldest first. Messages (SMS, e-mail)
come from messaging's own source (`dialer.messaging.history.messages_timeline`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from sqlalchemy import Connection, select

from dialer.cases.models import TimelineEntry, TimelineKind
from dialer.cases.state import CaseRow
from dialer.messaging.history import messages_timeline
from dialer.store.models import (
    CallAttempt,
    CaseHistory,
    CaseNote,
    Disposition,
    Payment,
    Promise,
    PromiseStatus,
    Recording,
)

TimelineSource = Callable[[Connection, CaseRow, int], list[TimelineEntry]]

# The newest entries a case page shows unless asked for more.
DEFAULT_LIMIT = 200


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{Decimal(value).normalize():f}"


def calls(conn: Connection, case: CaseRow, limit: int) -> list[TimelineEntry]:
    """Every call to the debtor: how it ended, the agent's disposition, its recording."""
    rows = conn.execute(
        select(
            CallAttempt.id,
            CallAttempt.dialed_at,
            CallAttempt.campaign_id,
            CallAttempt.phone_id,
            CallAttempt.status,
            CallAttempt.outcome,
            CallAttempt.agent_id,
            CallAttempt.connected_at,
            CallAttempt.hungup_at,
            Disposition.code,
            Disposition.note,
            Disposition.agent_id.label("disposed_by"),
            Recording.id.label("recording_id"),
            Recording.status.label("recording_status"),
            Recording.duration_s,
        )
        .outerjoin(Disposition, Disposition.attempt_id == CallAttempt.id)
        .outerjoin(Recording, Recording.attempt_id == CallAttempt.id)
        .where(CallAttempt.tenant_id == case.tenant_id, CallAttempt.debtor_id == case.debtor_id)
        .order_by(CallAttempt.dialed_at.desc(), CallAttempt.id.desc())
        .limit(limit)
    ).all()
    entries = []
    for r in rows:
        talk = None
        if r.connected_at is not None and r.hungup_at is not None:
            talk = round((r.hungup_at - r.connected_at).total_seconds(), 1)
        outcome = r.outcome or r.status
        summary = f"call: {outcome}" + (f", {r.code}" if r.code else "")
        entries.append(
            TimelineEntry(
                at=r.dialed_at,
                kind=TimelineKind.CALL,
                ref=f"attempt:{r.id}",
                actor=f"agent:{r.agent_id}" if r.agent_id else None,
                summary=summary,
                data={
                    "attempt_id": r.id,
                    "campaign_id": r.campaign_id,
                    "phone_id": r.phone_id,
                    "status": r.status,
                    "outcome": r.outcome,
                    "talk_s": talk,
                    "disposition": r.code,
                    "note": r.note,
                    "recording_id": r.recording_id,
                    "recording_status": r.recording_status,
                    "recording_s": r.duration_s,
                },
            )
        )
    return entries


def history(conn: Connection, case: CaseRow, limit: int) -> list[TimelineEntry]:
    rows = conn.execute(
        select(CaseHistory)
        .where(CaseHistory.case_id == case.id)
        .order_by(CaseHistory.at.desc(), CaseHistory.id.desc())
        .limit(limit)
    ).all()
    entries = []
    for r in rows:
        kind = TimelineKind.STATUS if r.field == "status" else TimelineKind.ASSIGNMENT
        entries.append(
            TimelineEntry(
                at=r.at,
                kind=kind,
                ref=f"history:{r.id}",
                actor=r.actor,
                summary=f"{r.field}: {r.old_value or '-'} -> {r.new_value or '-'} ({r.reason})",
                data={"from": r.old_value, "to": r.new_value, "reason": r.reason},
            )
        )
    return entries


def notes(conn: Connection, case: CaseRow, limit: int) -> list[TimelineEntry]:
    rows = conn.execute(
        select(CaseNote)
        .where(CaseNote.case_id == case.id)
        .order_by(CaseNote.created_at.desc(), CaseNote.id.desc())
        .limit(limit)
    ).all()
    return [
        TimelineEntry(
            at=r.created_at,
            kind=TimelineKind.NOTE,
            ref=f"note:{r.id}",
            actor=r.author,
            summary=r.body,
            data={"body": r.body},
        )
        for r in rows
    ]


def payments(conn: Connection, case: CaseRow, limit: int) -> list[TimelineEntry]:
    # In the order the payments became known: a file read tonight lists what was paid today.
    rows = conn.execute(
        select(Payment)
        .where(Payment.case_id == case.id)
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(limit)
    ).all()
    return [
        TimelineEntry(
            at=r.created_at,
            kind=TimelineKind.PAYMENT,
            ref=f"payment:{r.id}",
            actor=r.recorded_by,
            summary=f"payment {r.external_id}: {_money(r.amount)} {r.currency}",
            data={
                "payment_id": r.external_id,
                "amount": _money(r.amount),
                "currency": r.currency,
                "paid_on": r.paid_on.isoformat(),
                "debt_id": r.debt_id,
                "source": r.source,
            },
        )
        for r in rows
    ]


def promises(conn: Connection, case: CaseRow, limit: int) -> list[TimelineEntry]:
    """A promise when it was made, and again when it was kept, broken or cancelled."""
    rows = conn.execute(
        select(Promise)
        .where(Promise.case_id == case.id)
        .order_by(Promise.created_at.desc(), Promise.id.desc())
        .limit(limit)
    ).all()
    entries = []
    for r in rows:
        data: dict[str, object] = {
            "promise_id": r.id,
            "amount": _money(r.amount),
            "currency": r.currency,
            "due_date": r.due_date.isoformat(),
            "status": r.status,
        }
        entries.append(
            TimelineEntry(
                at=r.created_at,
                kind=TimelineKind.PROMISE,
                ref=f"promise:{r.id}",
                actor=r.created_by,
                summary=f"promise to pay {_money(r.amount)} {r.currency} by {r.due_date}",
                data=data,
            )
        )
        if r.resolved_at is not None and r.status != PromiseStatus.OPEN.value:
            entries.append(
                TimelineEntry(
                    at=r.resolved_at,
                    kind=TimelineKind.PROMISE_RESOLVED,
                    ref=f"promise:{r.id}",
                    actor=None,
                    summary=f"promise {r.id} {r.status}",
                    data=data,
                )
            )
    return entries


DEFAULT_SOURCES: tuple[TimelineSource, ...] = (
    calls,
    messages_timeline,
    history,
    notes,
    payments,
    promises,
)


def build_timeline(
    conn: Connection,
    case: CaseRow,
    sources: Sequence[TimelineSource] = DEFAULT_SOURCES,
    limit: int = DEFAULT_LIMIT,
) -> tuple[TimelineEntry, ...]:
    """The case's newest `limit` entries from every source, oldest first."""
    merged = sorted(
        (entry for source in sources for entry in source(conn, case, limit)),
        key=TimelineEntry.sort_key,
    )
    return tuple(merged[-limit:])
