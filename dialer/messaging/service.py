"""Sending SMS and e-mail through the compliance guard: plan a batch, dispatch what may go now,
schedule what may not, apply receipts and opt-outs. The CLI, the web and the cases all call this."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    bindparam,
    func,
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

_T = TypeVar("_T")
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


@dataclass
class _Chunk:
    """One chunk of a dispatch on its way: its new values so far, what is to be sent (row,
    reservation id) and what the guard is to be asked (row, request), in row order."""

    changes: _Changes
    to_send: list[tuple[Any, str]] = field(default_factory=list)
    asked: list[tuple[Any, AttemptRequest]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Preview:
    """A message as it would go to one debtor now, with the guard's answer (nothing reserved)."""

    debtor_id: int
    recipient: str
    rendered: Rendered
    decision: Decision


class _InTurn(Executor):
    """Runs what is submitted at once, in the caller's thread; its exceptions are raised
    there and then, as if it had been called directly."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        done: Future[_T] = Future()
        done.set_result(fn(*args, **kwargs))
        return done


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
        # Each part is stored by `_worker` while the next is read and rendered; the next part
        # is counted only once the one before it is stored, and a failure there ends the run.
        with self._worker() as worker:
            storing: Future[int] | None = None
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
                if storing is not None:
                    report.created += storing.result()
                    storing = None
                if rows:
                    storing = worker.submit(self._store_planned, rows)
            if storing is not None:
                report.created += storing.result()
        return report, previews

    def _store_planned(self, rows: Sequence[dict[str, Any]]) -> int:
        """New message rows stored in one transaction (COPY on PostgreSQL); how many."""
        with self.store.begin() as conn:
            if conn.dialect.name == "postgresql":
                _pg_copy(conn, _M, rows)
            else:
                conn.execute(insert(_M), rows)
        return len(rows)

    # -- dispatching ----------------------------------------------------------------------
    def due_count(self, batch_key: str) -> int:
        """How many of the batch's messages a dispatch now would take up: planned, left
        mid-send, and scheduled ones whose time has come."""
        with self.store.begin() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        Message.tenant_id == self.tenant_id,
                        Message.batch_key == batch_key,
                        _due(self.clock()),
                    )
                ).scalar_one()
            )

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
        query = select(
            Message.id,
            Message.debtor_id,
            Message.channel,
            Message.recipient,
            Message.subject,
            Message.body,
            Message.status,
            Message.reservation_id,
        ).where(Message.tenant_id == self.tenant_id, _due(now))
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
        progress: Callable[[int, DispatchReport], None] | None = None,
    ) -> DispatchReport:
        """Put every message that may go now (planned, scheduled and due, or left mid-send by a
        crash) to the guard and the provider. `batch_key` None: every batch of the tenant.
        `progress` is told, chunk by chunk once it is recorded, how many messages it handled
        and what became of them."""
        total = DispatchReport()
        # One pass: each message is looked at once per call, and each query starts where the
        # last one stopped (no rescanning of what was just sent).
        after: tuple[int, str] = (0, "")
        # Once the guard has answered for a chunk, a worker thread writes the answers, sends
        # and records the results, while this thread reads the next chunk and its debtors
        # and has the guard classify their numbers (the database and the gateway work while
        # Python does). The next chunk goes to the guard only once the previous one is
        # recorded: a failure there stops the run before anything more is reserved, marked
        # sending or sent, as when everything ran in turn. Until then this thread only
        # reads: never two writers.
        with self._worker() as worker:
            in_flight: tuple[Future[DispatchReport], int] | None = None
            while True:
                now = self.clock()
                with self.store.begin() as conn:
                    rows = self._open_rows(conn, batch_key, now, after, self.settings.chunk)
                chunk = self._assess(rows, self._fresh_facts(rows), now)
                self._warm_guard(chunk.asked)
                if in_flight is not None:
                    done, count = in_flight
                    in_flight = None
                    chunk_report = done.result()  # its exception, if any, ends the run here
                    total.add(chunk_report)
                    if progress is not None:
                        progress(count, chunk_report)
                if not rows:
                    return total
                last = rows[-1]
                after = (last.id, "") if batch_key is None else (last.debtor_id, last.channel)
                self._reserve(rows, chunk)
                in_flight = (worker.submit(self._complete, chunk), len(rows))

    def _worker(self) -> Executor:
        """Where `plan` stores and `dispatch` completes its chunks: a thread of its own when
        the database is a server; in turn, in this thread, on SQLite, whose work runs in this
        process anyway (there a second thread only contended for the interpreter: 2 to 13%
        more of the sender's CPU per message, 20,000 SMS, 5 runs)."""
        if self.store.dialect == "sqlite":
            return _InTurn()
        return ThreadPoolExecutor(1, thread_name_prefix="messaging-send")

    def _fresh_facts(self, rows: Sequence[Any]) -> dict[int, DebtorFacts]:
        """What is known now of the debtors of the rows about to be put to the guard (a crash
        left the others mid-send: they are not asked again)."""
        fresh = [r for r in rows if r.status != MessageStatus.SENDING.value]
        if not fresh:
            return {}
        with self.store.begin() as conn:
            return load_facts(
                conn,
                self.tenant_id,
                [r.debtor_id for r in fresh],
                frozenset(Channel(r.channel) for r in fresh),
            )

    def _assess(
        self, rows: Sequence[Any], facts: Mapping[int, DebtorFacts], now: datetime
    ) -> _Chunk:
        """What becomes of each row before the guard is asked: e-mails left mid-send are
        unknown, SMS left mid-send go again on their reservation, rows whose debt, number or
        address went since planning are blocked, and the rest become guard requests. Nothing
        is written or reserved here."""
        chunk = _Chunk(_Changes(now))
        for r in rows:
            if r.status == MessageStatus.SENDING.value:
                if r.channel == Channel.EMAIL.value:
                    # It may have been handed to the SMTP server before the crash: never twice.
                    cut = "interrupted while sending"
                    chunk.changes.settle(
                        r.id, MessageStatus.UNKNOWN, {"why": cut}, error=f"{cut}; may have gone"
                    )
                else:
                    # The gateway de-duplicates by our ref: sending again cannot deliver twice.
                    chunk.to_send.append((r, r.reservation_id))
                continue
            f = facts.get(r.debtor_id)
            why: str | None = None
            if f is None or not f.debts:
                why = "no open debt left"
            elif r.channel == Channel.SMS.value and all(m[0] != r.recipient for m in f.mobiles):
                why = "number marked do-not-call or removed since the message was planned"
            elif r.channel == Channel.EMAIL.value and f.email != r.recipient:
                why = "e-mail address removed since the message was planned"
            if why is not None or f is None:
                chunk.changes.settle(r.id, MessageStatus.BLOCKED, {"why": why}, error=why)
                continue
            chunk.asked.append((r, self._request(Channel(r.channel), r.recipient, f, now)))
        return chunk

    def _warm_guard(self, asked: Sequence[tuple[Any, AttemptRequest]]) -> None:
        """Let the guard classify the chunk's numbers now, while the previous chunk is with
        the gateway and the database: the classification is most of a decision's CPU, and
        `Guard.prepare` changes no decision, reads and writes no ledger, audits nothing."""
        if not asked:
            return
        try:
            self.guard.prepare(req for _, req in asked)
        except Exception:  # a warm-up only: the decision itself raises what it must
            log.debug("guard warm-up skipped", exc_info=True)

    def _reserve(self, rows: Sequence[Any], chunk: _Chunk) -> None:
        """The chunk's requests put to the guard, one by one in order: what may go is reserved
        and joins `chunk.to_send` to be marked sending, the rest is to be scheduled or
        blocked (`_complete` writes it)."""
        # Before anything is reserved or marked sending: a message left "sending" without a
        # provider would be taken for one interrupted mid-send.
        missing = {r.channel for r in rows} - {c.value for c in self.providers}
        if missing:
            raise MessagingError(f"no provider configured for {', '.join(sorted(missing))}")
        changes, asked = chunk.changes, chunk.asked
        now = changes.now
        decisions = self.guard.check_and_reserve_many([a[1] for a in asked], now) if asked else []
        for (r, _req), d in zip(asked, decisions, strict=True):
            decided = decision_to_dict(d)
            if d.allowed:
                assert d.reservation_id is not None
                chunk.to_send.append((r, d.reservation_id))
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

    def _complete(self, chunk: _Chunk) -> DispatchReport:
        """The chunk's answers written, then its reserved messages handed to their providers
        and what each provider said of each recorded (on the worker thread of `dispatch`)."""
        # The reservation and "sending" are durable before anything leaves: a crash from here
        # on is seen by the next run (see the SENDING branch of `_assess`).
        self._write(chunk.changes)
        sent = _Changes(chunk.changes.now)
        by_channel: dict[str, list[tuple[Any, str]]] = {}
        for r, rid in chunk.to_send:
            by_channel.setdefault(r.channel, []).append((r, rid))
        for channel, items in by_channel.items():
            provider = self.providers[Channel(channel)]
            results = provider.send(
                [Outgoing(f"m-{r.id}", r.recipient, r.body, r.subject) for r, _ in items]
            )
            for (r, rid), res in zip(items, results, strict=True):
                self._record_result(sent, r, rid, res, provider.name)
        self._write(sent)
        sent.report.add(chunk.changes.report)
        return sent.report

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
        log.warning("x message %s to %s failed: %s", r.id, mask_recipient(r.recipient), res.error)

    def _write(self, changes: _Changes) -> None:
        """The rows' new values and their events, atomically: on PostgreSQL one statement,
        elsewhere one transaction of one executemany per set of columns."""
        if not changes.updates and not changes.events:
            return
        groups = _by_columns(changes.updates)
        if self.store.dialect == "postgresql":
            # A single statement is atomic by itself: sent in autocommit it needs no BEGIN or
            # COMMIT round trip, and the server commits it (durably) before it answers.
            with self.store.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            ) as conn:
                _pg_write(conn, groups, changes.events)
            return
        with self.store.begin() as conn:
            for keys, group in groups.items():
                stmt = (
                    update(_M)
                    .where(_M.c.id == bindparam("mid"))
                    .values({k: bindparam(k) for k in keys})
                )
                conn.execute(stmt, group)
            if changes.events:
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
                mask_recipient(sender),
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


# PostgreSQL types of the message columns a dispatch writes (`_pg_write`).
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


def _by_columns(updates: Sequence[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """The updates grouped by the columns they set (sorted names, "mid" aside)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for u in updates:
        groups.setdefault(tuple(sorted(k for k in u if k != "mid")), []).append(u)
    return groups


def _pg_json_value(value: Any) -> Any:
    """What json.dumps cannot write by itself: datetimes, as ISO 8601 with their offset."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            # Refused as UtcDateTime refuses it: its meaning would depend on the server's zone.
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware value")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _pg_write(
    conn: Connection,
    groups: Mapping[tuple[str, ...], Sequence[dict[str, Any]]],
    events: Sequence[dict[str, Any]],
) -> None:
    """A chunk's writes as one statement: an UPDATE (a data-modifying CTE) per set of columns,
    then the events INSERTed in list order. Rows travel as one JSON text per group read by
    json_to_recordset, which parses each row once (psycopg dumped per-column arrays element by
    element in Python: half the writes' CPU) and keeps a json value's text as sent. The text of
    the statement depends only on the sets of columns, so psycopg prepares each variant once
    per connection."""
    ctes: list[str] = []
    params: dict[str, str] = {}
    for n, (columns, rows) in enumerate(groups.items()):
        unknown = set(columns) - _PG_TYPES.keys()
        if unknown:
            raise ValueError(f"no PostgreSQL type for message column(s) {sorted(unknown)}")
        defs = ", ".join(f"{c} {_PG_TYPES[c]}" for c in columns)
        sets = ", ".join(f"{c} = v.{c}" for c in columns)
        ctes.append(
            f"u{n} AS (UPDATE {_M.name} AS m SET {sets} FROM json_to_recordset(%(u{n})s::json) "
            f"AS v(mid bigint, {defs}) WHERE m.id = v.mid)"
        )
        params[f"u{n}"] = json.dumps(rows, default=_pg_json_value)
    params["events"] = json.dumps(events, default=_pg_json_value)
    with_ctes = f"WITH {', '.join(ctes)} " if ctes else ""
    conn.exec_driver_sql(
        f"{with_ctes}INSERT INTO {_E.name} (message_id, at, kind, detail) "
        "SELECT message_id, at, kind, detail FROM ROWS FROM (json_to_recordset(%(events)s::json) "
        "AS (message_id bigint, at timestamptz, kind text, detail json)) "
        "WITH ORDINALITY AS e(message_id, at, kind, detail, i) ORDER BY e.i",
        params,
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


def _due(now: datetime) -> ColumnElement[bool]:
    """A message a dispatch at `now` takes up: planned, left mid-send, or scheduled and due."""
    return or_(
        Message.status.in_([MessageStatus.PLANNED.value, MessageStatus.SENDING.value]),
        and_(Message.status == MessageStatus.SCHEDULED.value, Message.not_before <= now),
    )


def mask_recipient(recipient: str) -> str:
    """A phone number or e-mail address as logs and pages may show it."""
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    return mask_phone(recipient)
