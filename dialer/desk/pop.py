"""The screen pop: who the agent is talking to, what they owe, what happened before, what to say."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Connection, Integer, bindparam, func, select
from sqlalchemy.exc import SQLAlchemyError

from compliance_guard.zones import ZoneResolver
from dialer.desk.case import CallCase, local_today, read_case
from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import (
    CallAttempt,
    Campaign,
    Debt,
    DebtStatus,
    Disposition,
    DispositionCode,
    Phone,
)

# The newest attempts of the debtor read for the history (with their dispositions); older ones
# are left out of the pop, and the week's counts and open promises are then asked for apart.
HISTORY_ATTEMPTS = 50
WEEK = timedelta(days=7)
_CENT = Decimal("0.01")
# Dispositions whose latest occurrence is worth a compliance note, in the order shown.
_NOTED_CODES = (
    DispositionCode.DECEASED,
    DispositionCode.DO_NOT_CALL,
    DispositionCode.DISPUTE,
    DispositionCode.WRONG_PARTY,
)


@dataclass(frozen=True)
class DebtorCard:
    id: int
    name: str
    external_id: str


@dataclass(frozen=True)
class Account:
    """One debt of the debtor, as placed with us."""

    debt_id: int
    reference: str  # the creditor's account number
    balance: Decimal
    currency: str
    days_past_due: int | None
    status: str


@dataclass(frozen=True)
class HistoryEntry:
    """An earlier call attempt of the debtor, or a disposition an agent recorded."""

    at: datetime
    kind: Literal["attempt", "disposition"]
    outcome: str  # the attempt's outcome, or the disposition's code
    agent_id: str | None
    note: str | None = None
    promise_amount: Decimal | None = None
    promise_date: date | None = None
    payment_amount: Decimal | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "outcome": self.outcome,
            "agent_id": self.agent_id,
            "note": self.note,
            "promise_amount": _money_or_none(self.promise_amount),
            "promise_date": self.promise_date.isoformat() if self.promise_date else None,
            # agent.js shows it beside the code ("paid ... on the call")
            "payment_amount": _money_or_none(self.payment_amount),
        }


@dataclass(frozen=True)
class OpenPromise:
    """A promise to pay whose date has not passed (today included)."""

    amount: Decimal
    currency: str
    due: date
    debt_reference: str
    agent_id: str | None


@dataclass(frozen=True)
class ScreenPop:
    """What the agent's desktop shows for one call (`to_json` is what the pages read)."""

    attempt_id: int
    campaign: str
    debtor: DebtorCard
    phone: str  # the number dialled, E.164
    accounts: tuple[Account, ...]
    history: tuple[HistoryEntry, ...]  # newest first
    promises: tuple[OpenPromise, ...]  # soonest first
    compliance_notes: tuple[str, ...]
    script: str
    # What the script was filled from, so it can be filled for another agent (`script_for`).
    script_template: str = field(default="", repr=False, compare=False)
    script_values: tuple[tuple[str, str], ...] = field(default=(), repr=False, compare=False)
    # The case's collection strategy, the step it is on (from 0) and its risk band; None when
    # the strategy run has not reached the case.
    strategy: str | None = None
    strategy_step: int | None = None
    risk_band: str | None = None

    def script_for(self, agent_name: str) -> str:
        """The script as `agent_name` reads it (a pop read ahead is pushed to whoever takes
        the call)."""
        values = dict(self.script_values)
        values["agent"] = agent_name
        return render_script(self.script_template, values)

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt_id": self.attempt_id,
            "campaign": self.campaign,
            "debtor": {
                "id": self.debtor.id,
                "name": self.debtor.name,
                "external_id": self.debtor.external_id,
            },
            "phone": self.phone,
            "accounts": [
                {
                    "debt_id": a.debt_id,
                    "reference": a.reference,
                    "balance": money(a.balance),
                    "currency": a.currency,
                    "days_past_due": a.days_past_due,
                    "status": a.status,
                }
                for a in self.accounts
            ],
            "history": [h.to_json() for h in self.history],
            "promises": [
                {
                    "amount": money(p.amount),
                    "currency": p.currency,
                    "due": p.due.isoformat(),
                    "debt_reference": p.debt_reference,
                    "agent_id": p.agent_id,
                }
                for p in self.promises
            ],
            "compliance_notes": list(self.compliance_notes),
            "script": self.script,
            "strategy": {
                "name": self.strategy,
                "step": self.strategy_step,
                "risk_band": self.risk_band,
            }
            if self.strategy is not None or self.risk_band is not None
            else None,
        }


@dataclass(frozen=True)
class AttemptOwner:
    """Whose call an attempt is: for authorization checks before showing or changing it."""

    agent_id: str | None  # None until the dialer has routed the call to an agent
    campaign_id: int
    debtor_id: int


def money(value: Decimal) -> str:
    """An amount as the pages read it: a decimal string with two places."""
    return str(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def _money_or_none(value: Decimal | None) -> str | None:
    return money(value) if value is not None else None


def attempt_owner(store: Store, tenant_id: int, attempt_id: int) -> AttemptOwner | None:
    """The agent, campaign and debtor of an attempt; None if it is not one of the tenant's."""
    a = CallAttempt
    try:
        with store.begin() as conn:
            row = conn.execute(
                select(a.agent_id, a.campaign_id, a.debtor_id).where(
                    a.id == attempt_id, a.tenant_id == tenant_id
                )
            ).first()
    except SQLAlchemyError as exc:
        raise StoreError(f"owner of attempt {attempt_id}: {error_reason(exc)}") from exc
    if row is None:
        return None
    return AttemptOwner(row.agent_id, int(row.campaign_id), int(row.debtor_id))


def build_screen_pop(
    store: Store,
    tenant_id: int,
    attempt_id: int,
    *,
    now: datetime,
    script_template: str,
    agent_name: str,
    creditor: str = "",
) -> ScreenPop | None:
    """The pop of one call, None if the attempt is not one of the tenant's.

    Three queries in one short transaction (the call with its debtor and phone, the debts, the
    debtor's newest attempts with their dispositions), two more only for a debtor with more
    than `HISTORY_ATTEMPTS` attempts.
    """
    try:
        with store.begin() as conn:
            case = read_case(conn, tenant_id, attempt_id)
            if case is None:
                return None
            params = {"tenant_id": tenant_id, "debtor_id": case.debtor_id}
            debts = conn.execute(_DEBTS, params).all()
            rows = conn.execute(_HISTORY, params).all()
            zones = case.zones(ZoneResolver(cache_size=8))
            today = local_today(zones, now)
            complete = len(rows) < HISTORY_ATTEMPTS
            week = _week_counts(conn, case, rows, complete, now)
            promise_rows = rows if complete else _promise_rows(conn, case, today)
    except SQLAlchemyError as exc:
        raise StoreError(f"screen pop of attempt {attempt_id}: {error_reason(exc)}") from exc

    accounts = tuple(
        Account(
            debt_id=int(d.id),
            reference=d.external_id,
            balance=Decimal(d.balance),
            currency=d.currency,
            days_past_due=d.days_past_due,
            status=d.status,
        )
        for d in debts
    )
    by_debt = {a.debt_id: a for a in accounts}
    history = _history(rows, case.attempt_id)
    promises = _open_promises(promise_rows, by_debt, accounts, today)
    notes = _notes(case, zones, accounts, rows, week, now)
    values = {
        "debtor": case.debtor_name,
        "agent": agent_name,
        "balance": _balance_text(case, by_debt, accounts),
        "creditor": creditor,
    }
    return ScreenPop(
        attempt_id=case.attempt_id,
        campaign=case.campaign_name,
        debtor=DebtorCard(case.debtor_id, case.debtor_name, case.debtor_external_id),
        phone=case.e164,
        accounts=accounts,
        history=history,
        promises=promises,
        compliance_notes=tuple(notes),
        script=render_script(script_template, values),
        script_template=script_template,
        script_values=tuple(values.items()),
        strategy=case.strategy,
        strategy_step=case.strategy_step,
        risk_band=case.risk_band,
    )


class _PlainNames(string.Formatter):
    """`str.format` limited to plain names: no attribute or index lookups in a template."""

    def get_field(
        self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Any, str]:
        if not field_name.isidentifier():
            raise KeyError(field_name)
        return kwargs[field_name], field_name


_FORMATTER = _PlainNames()


def render_script(template: str, values: Mapping[str, str]) -> str:
    """The template with {debtor}, {agent}, {balance}, {creditor} filled in; a template that
    cannot be filled (unknown name, stray brace) is shown as written rather than failing."""
    try:
        return _FORMATTER.vformat(template, (), values)
    except (KeyError, IndexError, ValueError, TypeError):
        return template


def _debtor_attempts() -> list[ColumnElement[bool]]:
    """The debtor's attempts. call_attempts has no debtor index; the (campaign_id, phone_id)
    index finds them: the debtor's few phones in the tenant's few campaigns."""
    a = CallAttempt
    tenant_id = bindparam("tenant_id", type_=Integer)
    debtor_id = bindparam("debtor_id", type_=Integer)
    return [
        a.tenant_id == tenant_id,
        a.debtor_id == debtor_id,
        a.campaign_id.in_(select(Campaign.id).where(Campaign.tenant_id == tenant_id)),
        a.phone_id.in_(select(Phone.id).where(Phone.debtor_id == debtor_id)),
    ]


def _history_query() -> Any:
    a, d = CallAttempt, Disposition
    return (
        select(
            a.id,
            a.phone_id,
            a.debt_id,
            a.dialed_at,
            a.connected_at,
            a.status,
            a.outcome,
            a.agent_id,
            d.id.label("disposition_id"),
            d.created_at,
            d.code,
            d.agent_id.label("disposition_agent_id"),
            d.note,
            d.promise_amount,
            d.promise_date,
            d.payment_amount,
        )
        .outerjoin(d, d.attempt_id == a.id)
        .where(*_debtor_attempts())
        .order_by(a.dialed_at.desc(), a.id.desc(), d.id.desc())
    )


# Built once: a pop is read for every answered call, and a statement object reused is neither
# rebuilt nor matched to its cached compilation column by column.
_DEBTS = (
    select(
        Debt.id,
        Debt.external_id,
        Debt.balance,
        Debt.currency,
        Debt.days_past_due,
        Debt.status,
    )
    .where(Debt.tenant_id == bindparam("tenant_id"), Debt.debtor_id == bindparam("debtor_id"))
    .order_by(Debt.id)
)
_HISTORY = _history_query().limit(HISTORY_ATTEMPTS)
_WEEK_COUNTS = select(func.count(), func.count(CallAttempt.connected_at)).where(
    *_debtor_attempts(), CallAttempt.dialed_at >= bindparam("since")
)
_PROMISES = _history_query().where(
    Disposition.code == DispositionCode.PROMISE_TO_PAY.value,
    Disposition.promise_date >= bindparam("today"),
)


@dataclass(frozen=True)
class _Week:
    calls: int  # attempts in the last 7 days, this one included
    connected: int  # of those, reached an agent


def _week_counts(
    conn: Connection, case: CallCase, rows: Sequence[Any], complete: bool, now: datetime
) -> _Week:
    since = now - WEEK
    if complete or rows[-1].dialed_at < since:
        recent = {r.id: r.connected_at for r in rows if r.dialed_at >= since}
        return _Week(len(recent), sum(1 for c in recent.values() if c is not None))
    calls, connected = conn.execute(
        _WEEK_COUNTS, {"tenant_id": case.tenant_id, "debtor_id": case.debtor_id, "since": since}
    ).one()
    return _Week(int(calls), int(connected))


def _promise_rows(conn: Connection, case: CallCase, today: date) -> Sequence[Any]:
    """Promises not yet due among all of the debtor's dispositions (long histories only)."""
    params = {"tenant_id": case.tenant_id, "debtor_id": case.debtor_id, "today": today}
    return conn.execute(_PROMISES, params).all()


def _history(rows: Sequence[Any], current_attempt: int) -> tuple[HistoryEntry, ...]:
    entries: list[HistoryEntry] = []
    seen_attempts: set[int] = set()
    for r in rows:
        if r.id != current_attempt and r.id not in seen_attempts:
            seen_attempts.add(r.id)
            entries.append(
                HistoryEntry(
                    at=r.dialed_at,
                    kind="attempt",
                    outcome=r.outcome or r.status,
                    agent_id=r.agent_id,
                )
            )
        if r.disposition_id is not None:
            entries.append(
                HistoryEntry(
                    at=r.created_at,
                    kind="disposition",
                    outcome=r.code,
                    agent_id=r.disposition_agent_id,
                    note=r.note,
                    promise_amount=r.promise_amount,
                    promise_date=r.promise_date,
                    payment_amount=r.payment_amount,
                )
            )
    # Newest first; a disposition before the call it closes when both carry the same time.
    entries.sort(key=lambda e: (e.at, e.kind == "disposition"), reverse=True)
    return tuple(entries)


def _open_promises(
    rows: Sequence[Any],
    by_debt: Mapping[int, Account],
    accounts: Sequence[Account],
    today: date,
) -> tuple[OpenPromise, ...]:
    promises = []
    for r in rows:
        if (
            r.disposition_id is None
            or r.code != DispositionCode.PROMISE_TO_PAY.value
            or r.promise_date is None
            or r.promise_amount is None
            or r.promise_date < today
        ):
            continue
        account = by_debt.get(r.debt_id) if r.debt_id is not None else None
        if account is None and accounts:
            currency, reference = accounts[0].currency, ""
        else:
            currency = account.currency if account else ""
            reference = account.reference if account else ""
        promises.append(
            OpenPromise(
                amount=Decimal(r.promise_amount),
                currency=currency,
                due=r.promise_date,
                debt_reference=reference,
                agent_id=r.disposition_agent_id,
            )
        )
    promises.sort(key=lambda p: p.due)
    return tuple(promises)


def _balance_text(
    case: CallCase, by_debt: Mapping[int, Account], accounts: Sequence[Account]
) -> str:
    """The balance the call is about: its debt's, else the debtor's total per currency."""
    account = by_debt.get(case.debt_id) if case.debt_id is not None else None
    if account is not None:
        return f"{money(account.balance)} {account.currency}"
    totals: dict[str, Decimal] = {}
    for a in accounts:
        totals[a.currency] = totals.get(a.currency, Decimal(0)) + a.balance
    return " + ".join(f"{money(total)} {currency}" for currency, total in totals.items())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _local_time_note(zones: tuple[str, ...], now: datetime) -> str:
    if not zones:
        return "Debtor's time zone is unknown (no zone on file, no address, no geographic number)"
    readings = ", ".join(f"{now.astimezone(ZoneInfo(z)):%a %H:%M} in {z}" for z in zones)
    if len(zones) == 1:
        return f"Debtor's local time: {readings}"
    return f"Debtor's local time: {readings} (calling hours apply in each)"


def _notes(
    case: CallCase,
    zones: tuple[str, ...],
    accounts: Sequence[Account],
    rows: Sequence[Any],
    week: _Week,
    now: datetime,
) -> list[str]:
    """What the agent must not miss, in plain English: local time and the week first."""
    notes = [_local_time_note(zones, now)]
    notes.append(
        f"{_plural(week.calls, 'call')} to this debtor in the last 7 days, this one included; "
        f"{week.connected} reached an agent"
    )
    last_talk = next(
        (r.connected_at for r in rows if r.id != case.attempt_id and r.connected_at is not None),
        None,
    )
    if last_talk is not None and last_talk >= now - WEEK:
        days = (now - last_talk).days
        ago = "today" if days == 0 else f"{_plural(days, 'day')} ago"
        notes.append(f"Last conversation with an agent {last_talk:%Y-%m-%d %H:%M} UTC ({ago})")
    for a in accounts:
        if a.status == DebtStatus.DISPUTED.value:
            notes.append(f"Account {a.reference} is disputed: do not collect on it")
    if case.phone_do_not_call:
        notes.append("This number is marked do-not-call")
    if not case.phone_consent:
        notes.append("No consent on file for automated calls to this number")
    latest: dict[str, Any] = {}
    for r in rows:  # newest first: the first of each code is its latest
        if r.disposition_id is not None and r.code not in latest:
            latest[r.code] = r
    for code in _NOTED_CODES:
        r = latest.get(code.value)
        if r is None:
            continue
        when = f"{r.created_at.astimezone(UTC):%Y-%m-%d}"
        by = f" by agent {r.disposition_agent_id}" if r.disposition_agent_id else ""
        if code is DispositionCode.DECEASED:
            notes.append(f"Reported deceased on {when}{by}")
        elif code is DispositionCode.DO_NOT_CALL:
            notes.append(f"Asked not to be called on {when}{by}")
        elif code is DispositionCode.DISPUTE:
            notes.append(f"Dispute recorded on {when}{by}")
        elif r.phone_id == case.phone_id:
            notes.append(f"A wrong party answered this number on {when}{by}")
    return notes
