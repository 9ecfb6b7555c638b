"""Sending SMS and e-mail through the compliance guard: plan a batch, dispatch what may go now,
schedule what may not, apply receipts and opt-outs. The CLI, the web and the cases all call this."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    insert,
    or_,
    select,
    tuple_,
    update,
)

from compliance_guard.models import AttemptRequest, Channel, Decision, Flag, FlagScope, PhoneType
from compliance_guard.service import Guard, decision_to_dict
from dialer.guard_names import debt_subject, person_subject
from dialer.logsafe import mask_phone
from dialer.messaging.audience import DebtorFacts, load_facts
from dialer.messaging.errors import MessagingError

# Re-exported: the log of a debtor's messages moved to `history`; its callers import it here.
from dialer.messaging.history import MessageView as MessageView
from dialer.messaging.history import messages_for_debtor as messages_for_debtor
from dialer.messaging.models import (
    DeliveryReceipt,
    InboundResult,
    MessageStatus,
    Outgoing,
    SendResult,
)
from dialer.messaging.optout import (
    DEFAULT_OPT_OUT_FLAGS,
    channels_refused,
    is_opt_out,
    opt_out_flags,
)
from dialer.messaging.provider import Provider
from dialer.messaging.tables import InboundMessage, Message, MessageEvent
from dialer.messaging.templates import Personalisation, Rendered, Template
from dialer.store.db import Store
from dialer.store.models import Phone, Tenant

log = logging.getLogger(__name__)

_M = cast(Table, Message.__table__)
_E = cast(Table, MessageEvent.__table__)


@dataclass(frozen=True)
class MessagingSettings:
    tenant: str
    # The guard's campaign name for messages: which rule set governs them (RuleBook) and the
    # key of campaign-scoped caps.
    campaign_id: str = "messages"
    # The debtor's payment link; {debtor} is the creditor's debtor id, URL-quoted.
    payment_link: str = ""
    opt_out_flags: Mapping[str, tuple[Flag, ...]] = field(
        default_factory=lambda: dict(DEFAULT_OPT_OUT_FLAGS)
    )
    # Messages put to the guard (one round trip) and handed to the provider at a time.
    chunk: int = 500


@dataclass(frozen=True, slots=True)
class Skipped:
    debtor_id: int
    reason: str


@dataclass
class PlanReport:
    batch_key: str
    created: int = 0
    existing: int = 0  # already planned by an earlier run of the same batch
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class DispatchReport:
    sent: int = 0
    scheduled: int = 0
    blocked: int = 0
    failed: int = 0
    unknown: int = 0

    def add(self, other: DispatchReport) -> None:
        self.sent += other.sent
        self.scheduled += other.scheduled
        self.blocked += other.blocked
        self.failed += other.failed
        self.unknown += other.unknown

    def count(self, status: MessageStatus) -> None:
        """One more message ended in `status` (sending is no end: it is not counted)."""
        if status is MessageStatus.SENT:
            self.sent += 1
        elif status is MessageStatus.SCHEDULED:
            self.scheduled += 1
        elif status is MessageStatus.BLOCKED:
            self.blocked += 1
        elif status is MessageStatus.FAILED:
            self.failed += 1
        elif status is MessageStatus.UNKNOWN:
            self.unknown += 1


@dataclass
class _Changes:
    """A chunk's new message values and events, written together, and what they add up to."""

    now: datetime
    updates: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    report: DispatchReport = field(default_factory=DispatchReport)

    def settle(
        self,
        message_id: int,
        status: MessageStatus,
        event: dict[str, Any] | None,
        **values: Any,
    ) -> None:
        """The message takes `status` and `values`; `event` (its detail) goes into its
        history under the status's name, unless None."""
        self.updates.append(
            {"mid": message_id, "updated_at": self.now, "status": status.value, **values}
        )
        if event is not None:
            self.events.append(
                {"message_id": message_id, "at": self.now, "kind": status.value, "detail": event}
            )
        self.report.count(status)


@dataclass(frozen=True, slots=True)
class Preview:
    """A message as it would go to one debtor now, with the guard's answer (nothing reserved)."""

    debtor_id: int
    recipient: str
    rendered: Rendered
    decision: Decision


def _utc_now() -> datetime:
    return datetime.now(UTC)


def tenant_id_of(store: Store, name: str) -> int:
    with store.begin() as conn:
        found = conn.execute(select(Tenant.id).where(Tenant.name == name)).scalar()
    if found is None:
        raise MessagingError(f"tenant {name!r} not found (import its portfolio first)")
    return int(found)


class MessagingService:
    def __init__(
        self,
        store: Store,
        guard: Guard,
        providers: Mapping[Channel, Provider],
        settings: MessagingSettings,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.guard = guard
        self.providers = providers
        self.settings = settings
        self.clock = clock
        self.tenant_id = tenant_id_of(store, settings.tenant)

    # -- rendering ------------------------------------------------------------------------
    def _recipient(self, template: Template, facts: DebtorFacts) -> str | None:
        if template.channel is Channel.SMS:
            return facts.mobiles[0][0] if facts.mobiles else None
        return facts.email

    def _render(
        self, template: Template, facts: DebtorFacts, language: str | None, now: datetime
    ) -> Rendered:
        amount, currency = facts.amount_due()
        personal = Personalisation(
            name=facts.name,
            amount=amount,
            currency=currency,
            due_date=facts.due_date(now),
            payment_link=facts.payment_link(self.settings.payment_link),
        )
        return template.render(personal, language or facts.language())

    def _skip_reason(self, template: Template, facts: DebtorFacts | None) -> str | None:
        if facts is None:
            return "no such debtor in this tenant"
        if not facts.debts:
            return "no open debt"
        if self._recipient(template, facts) is None:
            return "no mobile number" if template.channel is Channel.SMS else "no e-mail address"
        return None

    def _request(
        self, channel: Channel, recipient: str, facts: DebtorFacts, now: datetime
    ) -> AttemptRequest:
        zones: tuple[str, ...] = ()
        phone_type = PhoneType.OTHER
        if channel is Channel.SMS:
            for e164, ptype, tz in facts.mobiles:
                if e164 == recipient:
                    # audience.load_facts keeps mobile and other numbers only
                    phone_type = PhoneType.MOBILE if ptype == "mobile" else PhoneType.OTHER
                    zones = (tz,) if tz else ()
        if not zones and facts.timezone:
            zones = (facts.timezone,)
        return AttemptRequest(
            tenant=self.settings.tenant,
            person_id=person_subject(facts.debtor_id),
            debt_ids=tuple(debt_subject(d.id) for d in facts.debts),
            phone=recipient,
            campaign_id=self.settings.campaign_id,
            channel=channel,
            phone_type=phone_type,
            time_zones=zones,
            postal_code=facts.postal_code,
            country=facts.country,
            region=facts.region,
            facts_as_of=now,
        )

    def preview(self, template: Template, debtor_id: int, language: str | None = None) -> Preview:
        """The message one debtor would get now and the guard's answer; nothing is written."""
        now = self.clock()
        with self.store.begin() as conn:
            facts = load_facts(
                conn, self.tenant_id, [debtor_id], frozenset({template.channel})
            ).get(debtor_id)
        reason = self._skip_reason(template, facts)
        if reason is not None or facts is None:
            raise MessagingError(f"debtor {debtor_id}: {reason}")
        recipient = self._recipient(template, facts)
        assert recipient is not None
        rendered = self._render(template, facts, language, now)
        decision = self.guard.check(self._request(template.channel, recipient, facts, now), now)
        return Preview(debtor_id, recipient, rendered, decision)

    # -- planning -------------------------------------------------------------------------
    def plan(
        self,
        template: Template,
        debtor_ids: Sequence[int],
        batch_key: str,
        *,
        language: str | None = None,
        dry_run: bool = False,
    ) -> tuple[PlanReport, list[Preview]]:
        """Render the batch for every debtor and store it (status planned). Running the same
        batch again stores nothing twice. `dry_run` writes nothing and returns each message
        with the guard's answer as it would be now."""
        if not batch_key or len(batch_key) > 100:
            raise MessagingError(f"batch key: 1 to 100 characters, got {batch_key!r}")
        now = self.clock()
        report = PlanReport(batch_key)
        previews: list[Preview] = []
        channel = template.channel.value
        # What an earlier run of this batch stored, read once: asked chunk by chunk, PostgreSQL
        # (its statistics not yet knowing the batch) compared every stored row of the batch
        # with the chunk's ids, for each chunk.
        with self.store.begin() as conn:
            existing = set(
                conn.execute(
                    select(Message.debtor_id).where(
                        Message.tenant_id == self.tenant_id,
                        Message.batch_key == batch_key,
                        Message.channel == channel,
                    )
                ).scalars()
            )
        unique = list(dict.fromkeys(debtor_ids))  # a debtor named twice gets one message
        for start in range(0, len(unique), 2000):
            ids = unique[start : start + 2000]
            with self.store.begin() as conn:
                facts = load_facts(conn, self.tenant_id, ids, frozenset({template.channel}))
                rows: list[dict[str, Any]] = []
                for debtor_id in ids:
                    if debtor_id in existing:
                        report.existing += 1
                        continue
                    f = facts.get(debtor_id)
                    reason = self._skip_reason(template, f)
                    if reason is not None or f is None:
                        report.skipped.append(Skipped(debtor_id, reason or "unknown"))
                        continue
                    recipient = self._recipient(template, f)
                    assert recipient is not None
                    rendered = self._render(template, f, language, now)
                    if dry_run:
                        decision = self.guard.check(
                            self._request(template.channel, recipient, f, now), now
                        )
                        previews.append(Preview(debtor_id, recipient, rendered, decision))
                        continue
                    rows.append(
                        {
                            "tenant_id": self.tenant_id,
                            "debtor_id": debtor_id,
                            "batch_key": batch_key,
                            "channel": channel,
                            "template": template.name,
                            "language": rendered.language,
                            "recipient": recipient,
                            "subject": rendered.subject,
                            "body": rendered.body,
                            "status": MessageStatus.PLANNED.value,
                            "not_before": None,
                            "decision": None,
                            "tries": 0,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                if rows and conn.dialect.name == "postgresql":
                    _pg_copy(conn, _M, rows)
                elif rows:
                    conn.execute(insert(_M), rows)
                report.created += len(rows)
        return report, previews

    # -- dispatching ----------------------------------------------------------------------
    def _open_rows(
        self,
        conn: Connection,
        batch_key: str | None,
        now: datetime,
        after: tuple[int, str],
        limit: int,
    ) -> list[Any]:
        """The next `limit` messages due after `after`: in one batch, in the order of its unique
        key (debtor, channel), which its index reads without sorting; across batches, in id
        order (`after` = (last id, "")). Ordered by id within a batch, SQLite read the whole
        batch through that index and sorted it for every chunk."""
        due = or_(
            Message.status.in_([MessageStatus.PLANNED.value, MessageStatus.SENDING.value]),
            and_(Message.status == MessageStatus.SCHEDULED.value, Message.not_before <= now),
        )
        query = select(
            Message.id,
            Message.debtor_id,
            Message.channel,
            Message.recipient,
            Message.subject,
            Message.body,
            Message.status,
            Message.reservation_id,
        ).where(Message.tenant_id == self.tenant_id, due)
        if batch_key is None:
            query = query.where(Message.id > after[0]).order_by(Message.id)
        else:
            query = query.where(
                Message.batch_key == batch_key,
                tuple_(Message.debtor_id, Message.channel) > tuple_(*after),
            ).order_by(Message.debtor_id, Message.channel)
        return list(conn.execute(query.limit(limit)).all())

    def dispatch(
        self,
        batch_key: str | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> DispatchReport:
        """Put every message that may go now (planned, scheduled and due, or left mid-send by a
        crash) to the guard and the provider. `batch_key` None: every batch of the tenant."""
        total = DispatchReport()
        # One pass: each message is looked at once per call, and each query starts where the
        # last one stopped (no rescanning of what was just sent).
        after: tuple[int, str] = (0, "")
        while True:
            now = self.clock()
            with self.store.begin() as conn:
                rows = self._open_rows(conn, batch_key, now, after, self.settings.chunk)
            if not rows:
                return total
            last = rows[-1]
            after = (last.id, "") if batch_key is None else (last.debtor_id, last.channel)
            total.add(self._dispatch_chunk(rows, now))
            if progress is not None:
                progress(len(rows))

    def _dispatch_chunk(self, rows: Sequence[Any], now: datetime) -> DispatchReport:
        # Before anything is reserved or marked sending: a message left "sending" without a
        # provider would be taken for one interrupted mid-send.
        missing = {r.channel for r in rows} - {c.value for c in self.providers}
        if missing:
            raise MessagingError(f"no provider configured for {', '.join(sorted(missing))}")
        changes = _Changes(now)
        to_send: list[tuple[Any, str]] = []  # (row, reservation id)
        fresh = []
        for r in rows:
            if r.status != MessageStatus.SENDING.value:
                fresh.append(r)
            elif r.channel == Channel.EMAIL.value:
                # It may have been handed to the SMTP server before the crash: never twice.
                cut = "interrupted while sending"
                changes.settle(
                    r.id, MessageStatus.UNKNOWN, {"why": cut}, error=f"{cut}; may have gone"
                )
            else:
                # The gateway de-duplicates by our ref: sending again cannot deliver twice.
                to_send.append((r, r.reservation_id))
        with self.store.begin() as conn:
            facts = load_facts(
                conn,
                self.tenant_id,
                [r.debtor_id for r in fresh],
                frozenset(Channel(r.channel) for r in fresh),
            )
        asked: list[tuple[Any, AttemptRequest]] = []
        for r in fresh:
            f = facts.get(r.debtor_id)
            why: str | None = None
            if f is None or not f.debts:
                why = "no open debt left"
            elif r.channel == Channel.SMS.value and all(m[0] != r.recipient for m in f.mobiles):
                why = "number marked do-not-call or removed since the message was planned"
            elif r.channel == Channel.EMAIL.value and f.email != r.recipient:
                why = "e-mail address removed since the message was planned"
            if why is not None or f is None:
                changes.settle(r.id, MessageStatus.BLOCKED, {"why": why}, error=why)
                continue
            asked.append((r, self._request(Channel(r.channel), r.recipient, f, now)))
        decisions = self.guard.check_and_reserve_many([a[1] for a in asked], now) if asked else []
        for (r, _req), d in zip(asked, decisions, strict=True):
            decided = decision_to_dict(d)
            if d.allowed:
                assert d.reservation_id is not None
                to_send.append((r, d.reservation_id))
                changes.settle(
                    r.id,
                    MessageStatus.SENDING,
                    None,
                    decision=decided,
                    reservation_id=d.reservation_id,
                    not_before=None,
                )
            elif d.next_allowed_at is not None:
                changes.settle(
                    r.id,
                    MessageStatus.SCHEDULED,
                    decided,
                    decision=decided,
                    not_before=d.next_allowed_at,
                )
            else:
                changes.settle(r.id, MessageStatus.BLOCKED, decided, decision=decided)
        # The reservation and "sending" are durable before anything leaves: a crash from here
        # on is seen by the next run (see the SENDING branch above).
        self._write(changes)
        sent = _Changes(now)
        by_channel: dict[str, list[tuple[Any, str]]] = {}
        for r, rid in to_send:
            by_channel.setdefault(r.channel, []).append((r, rid))
        for channel, items in by_channel.items():
            provider = self.providers[Channel(channel)]
            results = provider.send(
                [Outgoing(f"m-{r.id}", r.recipient, r.body, r.subject) for r, _ in items]
            )
            for (r, rid), res in zip(items, results, strict=True):
                self._record_result(sent, r, rid, res, provider.name)
        self._write(sent)
        changes.report.add(sent.report)
        return changes.report

    def _record_result(
        self, changes: _Changes, r: Any, rid: str | None, res: SendResult, provider: str
    ) -> None:
        """What the provider said of one message: sent, or failed and its reservation freed."""
        if res.ok:
            changes.settle(
                r.id,
                MessageStatus.SENT,
                {"provider": provider, "tries": res.tries},
                provider=provider,
                provider_message_id=res.provider_message_id,
                sent_at=changes.now,
                tries=res.tries,
            )
            return
        # It never left: it must not count against the debtor's caps.
        if rid is not None:
            self.guard.release(rid, changes.now)
        detail = {
            "provider": provider,
            "error": res.error,
            "permanent": res.permanent,
            "tries": res.tries,
        }
        changes.settle(
            r.id, MessageStatus.FAILED, detail, provider=provider, error=res.error, tries=res.tries
        )
        log.warning("x message %s to %s failed: %s", r.id, _masked(r.recipient), res.error)

    def _write(self, changes: _Changes) -> None:
        """The rows' new values and their events, in one transaction: on PostgreSQL one
        statement per table (column arrays), elsewhere one executemany per set of columns."""
        if not changes.updates and not changes.events:
            return
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for u in changes.updates:
            groups.setdefault(tuple(sorted(k for k in u if k != "mid")), []).append(u)
        with self.store.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            for keys, group in groups.items():
                if postgres:
                    _pg_update(conn, keys, group)
                    continue
                stmt = (
                    update(_M)
                    .where(_M.c.id == bindparam("mid"))
                    .values({k: bindparam(k) for k in keys})
                )
                conn.execute(stmt, group)
            if changes.events and postgres:
                _pg_copy(conn, _E, changes.events)
            elif changes.events:
                conn.execute(insert(_E), changes.events)

    # -- receipts and replies -------------------------------------------------------------
    def apply_receipts(self, receipts: Sequence[DeliveryReceipt]) -> int:
        """Mark messages delivered or failed; returns how many messages a receipt matched.
        A receipt for an unknown id is ignored (another system's message, or one purged)."""
        matched = 0
        now = self.clock()
        with self.store.begin() as conn:
            for rc in receipts:
                mid = conn.execute(
                    select(Message.id).where(
                        Message.tenant_id == self.tenant_id,
                        Message.provider_message_id == rc.provider_message_id,
                    )
                ).scalar()
                if mid is None:
                    continue
                matched += 1
                values: dict[str, Any] = {"updated_at": now}
                if rc.delivered:
                    values |= {"status": MessageStatus.DELIVERED.value, "delivered_at": rc.at}
                else:
                    values |= {
                        "status": MessageStatus.FAILED.value,
                        "error": rc.detail or "not delivered",
                    }
                conn.execute(update(_M).where(_M.c.id == mid).values(values))
                conn.execute(
                    insert(_E).values(
                        message_id=mid,
                        at=rc.at,
                        kind="delivered" if rc.delivered else "undelivered",
                        detail={"detail": rc.detail},
                    )
                )
        return matched

    def handle_inbound(
        self, sender: str, body: str, channel: Channel = Channel.SMS
    ) -> InboundResult:
        """A reply from `sender`: STOP / 退订 and their variants opt the number out at once (the
        guard's flags, honoured by every node's next check); every reply is kept."""
        now = self.clock()
        with self.store.begin() as conn:
            debtor_ids = tuple(
                sorted(
                    set(
                        conn.execute(
                            select(Phone.debtor_id).where(
                                Phone.tenant_id == self.tenant_id, Phone.e164 == sender
                            )
                        ).scalars()
                    )
                )
            )
        opted = is_opt_out(body)
        flags: tuple[Flag, ...] = ()
        refused: tuple[Channel, ...] = ()
        if opted:
            ruleset = self.guard.rulebook.for_campaign(
                self.settings.tenant, self.settings.campaign_id
            )
            flags = opt_out_flags(ruleset, self.settings.opt_out_flags)
            for flag in flags:
                self.guard.set_flag(self.settings.tenant, flag, FlagScope.PHONE, sender, now)
            refused = channels_refused(ruleset, flags)
            log.info(
                "= %s opted out (%s): %s refused",
                _masked(sender),
                ", ".join(flags),
                ", ".join(refused),
            )
        with self.store.begin() as conn:
            conn.execute(
                insert(InboundMessage).values(
                    tenant_id=self.tenant_id,
                    debtor_id=debtor_ids[0] if debtor_ids else None,
                    channel=channel.value,
                    sender=sender,
                    body=body,
                    action="opt_out" if opted else "none",
                    received_at=now,
                )
            )
        return InboundResult(sender, opted, tuple(f.value for f in flags), refused, debtor_ids)


# PostgreSQL types of the message columns a dispatch writes (`_pg_update`).
_PG_TYPES = {
    "status": "text",
    "decision": "json",
    "reservation_id": "text",
    "not_before": "timestamptz",
    "provider": "text",
    "provider_message_id": "text",
    "sent_at": "timestamptz",
    "tries": "integer",
    "error": "text",
    "updated_at": "timestamptz",
}


def _pg_array(column: str, values: list[Any]) -> list[Any]:
    if _PG_TYPES[column] == "json":
        return [None if v is None else json.dumps(v) for v in values]
    return values


def _pg_update(conn: Connection, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """Every row's new values in one UPDATE ... FROM unnest(column arrays). psycopg's
    executemany sent a statement a row: half the time of a dispatch's writes."""
    sets = ", ".join(
        f"{c} = v.{c}::json" if _PG_TYPES[c] == "json" else f"{c} = v.{c}" for c in columns
    )
    arrays = ", ".join(
        f"%s::{'text' if _PG_TYPES[c] == 'json' else _PG_TYPES[c]}[]" for c in columns
    )
    params = [[r["mid"] for r in rows]]
    params += [_pg_array(c, [r[c] for r in rows]) for c in columns]
    conn.exec_driver_sql(
        f"UPDATE {_M.name} AS m SET {sets} FROM unnest(%s::bigint[], {arrays}) "
        f"AS v(mid, {', '.join(columns)}) WHERE m.id = v.mid",
        tuple(params),
    )


def _pg_copy(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Rows into `table` by COPY, in the connection's transaction (dict values as JSON)."""
    columns = list(rows[0])
    cursor = cast(Any, conn.connection.driver_connection).cursor()
    with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(
                [json.dumps(v) if isinstance(v, dict) else v for v in (row[c] for c in columns)]
            )


def _masked(recipient: str) -> str:
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    return mask_phone(recipient)
