"""What a case is made of, as the services hand it out: statuses and their transitions, debts,
promises, payments, notes, history and the timeline."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from dialer.store.models import CaseStatus, PromiseStatus

__all__ = [
    "AUTOMATIC_ONLY",
    "TRANSITIONS",
    "Actor",
    "CaseStatus",
    "CaseView",
    "DebtView",
    "HistoryView",
    "NoteView",
    "PaymentIn",
    "PaymentResult",
    "PaymentView",
    "PromiseRunReport",
    "PromiseStatus",
    "PromiseView",
    "ScoreTermView",
    "TimelineEntry",
    "TimelineKind",
    "allowed_from",
]

S = CaseStatus
# Where each status may go. Paid and settled only close; a closed case may be reopened.
# broken_promise and paid are reached by the promise run and by payments, never by hand.
TRANSITIONS: Mapping[CaseStatus, frozenset[CaseStatus]] = {
    S.NEW: frozenset({S.IN_PROGRESS, S.PROMISE_TO_PAY, S.PAID, S.SETTLED, S.LEGAL, S.CLOSED}),
    S.IN_PROGRESS: frozenset({S.PROMISE_TO_PAY, S.PAID, S.SETTLED, S.LEGAL, S.CLOSED}),
    S.PROMISE_TO_PAY: frozenset(
        {S.IN_PROGRESS, S.BROKEN_PROMISE, S.PAID, S.SETTLED, S.LEGAL, S.CLOSED}
    ),
    S.BROKEN_PROMISE: frozenset(
        {S.IN_PROGRESS, S.PROMISE_TO_PAY, S.PAID, S.SETTLED, S.LEGAL, S.CLOSED}
    ),
    # A case with legal is out of the collectors' hands: no promise is taken there.
    S.LEGAL: frozenset({S.IN_PROGRESS, S.PAID, S.SETTLED, S.CLOSED}),
    S.PAID: frozenset({S.CLOSED}),
    S.SETTLED: frozenset({S.CLOSED}),
    S.CLOSED: frozenset({S.IN_PROGRESS}),
}
AUTOMATIC_ONLY = frozenset({S.PAID, S.BROKEN_PROMISE})


def allowed_from(status: CaseStatus) -> tuple[str, ...]:
    """The statuses `status` may go to, in the enum's order (for messages)."""
    return tuple(s.value for s in CaseStatus if s in TRANSITIONS[status])


@dataclass(frozen=True)
class Actor:
    """Who made a change: a signed-in user, an agent at the desk, or a job of the system."""

    kind: str  # user, agent, system
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def user(cls, username: str) -> Actor:
        return cls("user", username)

    @classmethod
    def agent(cls, agent_id: str) -> Actor:
        return cls("agent", agent_id)

    @classmethod
    def system(cls, job: str) -> Actor:
        return cls("system", job)


@dataclass(frozen=True)
class DebtView:
    id: int
    external_id: str
    principal: Decimal
    balance: Decimal
    currency: str
    days_past_due: int
    status: str


@dataclass(frozen=True)
class PromiseView:
    id: int
    debt_id: int | None
    amount: Decimal
    currency: str
    promised_on: date
    due_date: date
    status: str
    disposition_id: int | None
    created_by: str
    created_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class PaymentView:
    id: int
    payment_id: str  # the creditor's id, the one idempotency is keyed on
    debt_id: int
    amount: Decimal
    currency: str
    paid_on: date
    method: str | None
    reference: str | None
    source: str
    recorded_by: str
    created_at: datetime


@dataclass(frozen=True)
class NoteView:
    id: int
    author: str
    body: str
    created_at: datetime


@dataclass(frozen=True)
class HistoryView:
    id: int
    field: str
    old_value: str | None
    new_value: str | None
    actor: str
    reason: str
    at: datetime


class TimelineKind(enum.StrEnum):
    """What a timeline entry is; entries at the same instant come in this order."""

    CALL = "call"
    # Messages (SMS, e-mail) join here, from their own timeline source.
    MESSAGE = "message"
    NOTE = "note"
    PAYMENT = "payment"
    PROMISE = "promise"  # made
    PROMISE_RESOLVED = "promise_resolved"  # kept, broken or cancelled
    STATUS = "status"
    ASSIGNMENT = "assignment"


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened on the case. `ref` names its row ("attempt:12", "payment:3");
    `data` holds its facts as JSON-ready values."""

    at: datetime
    kind: TimelineKind
    ref: str
    actor: str | None
    summary: str
    data: Mapping[str, object] = field(default_factory=dict)

    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.at, list(TimelineKind).index(self.kind), self.ref)


@dataclass(frozen=True)
class ScoreTermView:
    """One line of a case's stored risk score: the feature, what the case had, its points."""

    feature: str
    value: str
    points: float
    reason: str


@dataclass(frozen=True)
class CaseView:
    """A case with everything the case page shows."""

    id: int
    tenant_id: int
    debtor_id: int
    debtor_external_id: str
    debtor_name: str
    status: str
    agent_id: str | None
    opened_by: str
    # Given to agent_id by hand: the nightly assignment leaves the case with them.
    agent_kept: bool
    created_at: datetime
    status_changed_at: datetime
    balance: Mapping[str, Decimal]  # per currency, over every debt of the case
    debts: tuple[DebtView, ...]
    promises: tuple[PromiseView, ...]
    payments: tuple[PaymentView, ...]
    notes: tuple[NoteView, ...]
    history: tuple[HistoryView, ...]
    timeline: tuple[TimelineEntry, ...]
    # The nightly score (None: never scored) and where the case is in its strategy, why it
    # got it, and a manager's override (dialer/cases/strategy_run.py).
    risk_score: float | None = None
    risk_band: str | None = None
    risk_terms: tuple[ScoreTermView, ...] = ()
    scored_at: datetime | None = None
    strategy: str | None = None
    strategy_step: int | None = None
    strategy_since: date | None = None
    strategy_finished: bool = False
    strategy_reasons: tuple[str, ...] = ()
    override_by: str | None = None
    override_why: str | None = None
    override_at: datetime | None = None
    queued_campaign: str | None = None


@dataclass(frozen=True)
class PaymentIn:
    """A payment as posted or read from a file. `debt` is the creditor's account number; it
    may be left out when the case has a single debt."""

    payment_id: str
    amount: Decimal
    paid_on: date
    debt: str | None = None
    currency: str | None = None
    method: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class PaymentResult:
    id: int
    case_id: int
    created: bool  # False: this payment id was already recorded with the same facts
    balance_after: Decimal  # of the debt paid
    case_status: str
    overpaid: Decimal = Decimal(0)  # received beyond the debt's balance (the balance stops at 0)


@dataclass(frozen=True)
class PromiseRunReport:
    today: date
    checked: int
    kept: tuple[int, ...]  # promise ids
    broken: tuple[int, ...]
