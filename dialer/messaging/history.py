"""A debtor's messages as the case sees them: the log with each message's history, and the
case timeline's entries for SMS and e-mail (outbound with their fate, inbound replies)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, select

from dialer.cases.models import TimelineEntry, TimelineKind
from dialer.cases.state import CaseRow
from dialer.messaging.tables import InboundMessage, Message, MessageEvent
from dialer.store.db import Store

_M = cast(Table, Message.__table__)
_E = cast(Table, MessageEvent.__table__)
_I = cast(Table, InboundMessage.__table__)

# How much of a message's text the timeline's one-line summary carries.
_SUMMARY_CHARS = 60


@dataclass(frozen=True, slots=True)
class MessageView:
    """One message in a debtor's log, for the case timeline."""

    id: int
    channel: str
    direction: str  # out, in
    at: datetime
    status: str
    recipient: str
    subject: str | None
    body: str
    template: str | None
    decision: dict[str, Any] | None
    events: tuple[tuple[datetime, str, dict[str, Any]], ...]
    sent_at: datetime | None = None


def message_views(
    conn: Connection, tenant_id: int, debtor_id: int, limit: int | None = None
) -> list[MessageView]:
    """The debtor's messages, oldest first: all of them, or the newest `limit` of each
    direction (what a timeline of `limit` entries can show)."""
    out = (
        select(_M)
        .where(_M.c.tenant_id == tenant_id, _M.c.debtor_id == debtor_id)
        .order_by(_M.c.id.desc())
        .limit(limit)
    )
    rows = conn.execute(out).all()
    ids = [r.id for r in rows]
    history: dict[int, list[tuple[datetime, str, dict[str, Any]]]] = {}
    if ids:
        for e in conn.execute(
            select(_E.c.message_id, _E.c.at, _E.c.kind, _E.c.detail)
            .where(_E.c.message_id.in_(ids))
            .order_by(_E.c.id)
        ):
            history.setdefault(e.message_id, []).append((e.at, e.kind, e.detail))
    inbound = conn.execute(
        select(_I)
        .where(_I.c.tenant_id == tenant_id, _I.c.debtor_id == debtor_id)
        .order_by(_I.c.id.desc())
        .limit(limit)
    ).all()
    views = [
        MessageView(
            r.id,
            r.channel,
            "out",
            r.created_at,
            r.status,
            r.recipient,
            r.subject,
            r.body,
            r.template,
            r.decision,
            tuple(history.get(r.id, ())),
            r.sent_at,
        )
        for r in rows
    ]
    views += [
        MessageView(
            i.id, i.channel, "in", i.received_at, i.action, i.sender, None, i.body, None, None, ()
        )
        for i in inbound
    ]
    return sorted(views, key=lambda v: (v.at, v.direction, v.id))


def messages_for_debtor(store: Store, tenant_id: int, debtor_id: int) -> list[MessageView]:
    """Every message to and from a debtor, oldest first, each with its history: content, the
    guard's decision, sent / delivered / failed."""
    with store.begin() as conn:
        return message_views(conn, tenant_id, debtor_id)


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _SUMMARY_CHARS else line[: _SUMMARY_CHARS - 1] + "…"


def timeline_entry(view: MessageView) -> TimelineEntry:
    """A message as one timeline entry: outbound at the time it went (or was planned, if it
    has not gone), with its status; a reply at the time it came, with what it did."""
    if view.direction == "in":
        did = ", opted out" if view.status == "opt_out" else ""
        return TimelineEntry(
            at=view.at,
            kind=TimelineKind.MESSAGE,
            ref=f"inbound:{view.id}",
            actor="debtor",
            summary=f"{view.channel} reply{did}: {_short(view.body)}",
            data={
                "channel": view.channel,
                "direction": "in",
                "action": view.status,
                "sender": view.recipient,
                "body": view.body,
            },
        )
    decision = view.decision or {}
    return TimelineEntry(
        at=view.sent_at or view.at,
        kind=TimelineKind.MESSAGE,
        ref=f"message:{view.id}",
        actor=None,
        summary=f"{view.channel} {view.status}: {_short(view.subject or view.body)}",
        data={
            "channel": view.channel,
            "direction": "out",
            "status": view.status,
            "recipient": view.recipient,
            "template": view.template,
            "subject": view.subject,
            "body": view.body,
            "reasons": [r["rule"] for r in decision.get("reasons", [])],
            "not_before": decision.get("next_allowed_at"),
            "events": [
                {"at": at.isoformat(), "kind": kind, "detail": detail}
                for at, kind, detail in view.events
            ],
        },
    )


def messages_timeline(conn: Connection, case: CaseRow, limit: int) -> list[TimelineEntry]:
    """The case timeline's source for SMS and e-mail: the debtor's newest `limit` messages
    each way."""
    return [timeline_entry(v) for v in message_views(conn, case.tenant_id, case.debtor_id, limit)]
