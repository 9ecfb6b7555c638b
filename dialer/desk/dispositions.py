"""Dispositions: what the agent concluded, checked, stored with its callback, told to the guard."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from compliance_guard.errors import GuardError, ReservationClosed, UnknownReservation
from compliance_guard.models import Flag, FlagScope
from compliance_guard.models import Outcome as ComplianceOutcome
from compliance_guard.service import Guard
from compliance_guard.zones import ZoneResolver
from dialer.cases import service as cases
from dialer.desk.case import CallCase, local_today, read_case
from dialer.desk.errors import ComplianceNotUpdated, DispositionError
from dialer.errors import StoreError
from dialer.guard_names import debt_subject, person_subject
from dialer.store.db import Store, error_reason
from dialer.store.models import (
    CallAttempt,
    Callback,
    CallbackStatus,
    Debt,
    DebtStatus,
    Disposition,
    DispositionCode,
    Phone,
)

__all__ = [
    "ComplianceNotUpdated",
    "DispositionError",
    "DispositionRequest",
    "DispositionResult",
    "FlagToSet",
    "GuardEffects",
    "apply_guard_effects",
    "guard_effects",
    "record_disposition",
]

log = logging.getLogger(__name__)

# A promise to pay is for today or one of the next PROMISE_HORIZON days (the debtor's dates).
PROMISE_HORIZON = timedelta(days=90)
# A callback further ahead than this is a typing mistake, not a plan.
CALLBACK_HORIZON = timedelta(days=90)
# Codes that end collection on the debtor or the debt: a callback makes no sense with them.
_NO_CALLBACK = frozenset(
    {DispositionCode.DO_NOT_CALL, DispositionCode.DECEASED, DispositionCode.DISPUTE}
)


@dataclass(frozen=True)
class DispositionRequest:
    """What the agent submitted for one call."""

    attempt_id: int
    code: DispositionCode
    note: str | None = None
    promise_amount: Decimal | None = None
    promise_date: date | None = None
    payment_amount: Decimal | None = None
    callback_at: datetime | None = None  # timezone-aware
    callback_same_agent: bool = False


@dataclass(frozen=True)
class DispositionResult:
    disposition_id: int
    callback_id: int | None


@dataclass(frozen=True)
class FlagToSet:
    flag: Flag
    scope: FlagScope
    subject: str


@dataclass(frozen=True)
class GuardEffects:
    """What a disposition tells the compliance guard, applied after the database commit."""

    flags: tuple[FlagToSet, ...] = ()
    # The call's reservation and the outcome the disposition shows it had.
    outcome: tuple[str, ComplianceOutcome] | None = None


def record_disposition(
    store: Store,
    guard: Guard,
    tenant_name: str,
    tenant_id: int,
    request: DispositionRequest,
    *,
    agent_id: str,
    now: datetime,
) -> DispositionResult:
    """Check and store the disposition of one of the agent's calls, with its callback, then
    tell the guard what it changes (flags, the call's outcome).

    DispositionError (nothing written) when the attempt is not the agent's or already has a
    disposition, an amount or date is missing or out of range, or the guard would refuse a call
    at the callback time. ComplianceNotUpdated when everything is stored but the guard's
    ledger could not be reached (its `effects` can be applied again).
    """
    try:
        code = DispositionCode(request.code)
    except ValueError:
        known = ", ".join(c.value for c in DispositionCode)
        raise DispositionError("code", f"unknown code {request.code!r} (known: {known})") from None
    _check_fields(request, code, now)
    try:
        with store.begin() as conn:
            case = read_case(conn, tenant_id, request.attempt_id)
    except SQLAlchemyError as exc:
        raise StoreError(f"attempt {request.attempt_id}: {error_reason(exc)}") from exc
    case = _owned(case, request.attempt_id, agent_id)
    if request.promise_date is not None:
        today = local_today(case.zones(ZoneResolver(cache_size=8)), now)
        if not today <= request.promise_date <= today + PROMISE_HORIZON:
            raise DispositionError(
                "promise_date",
                f"a promise to pay is due between today ({today.isoformat()}) and "
                f"{(today + PROMISE_HORIZON).isoformat()}, not {request.promise_date.isoformat()}",
            )
    if request.callback_at is not None:
        _check_callback_with_guard(guard, tenant_name, case, request.callback_at)
    try:
        disposition_id, callback_id = _write(store, case, request, code, agent_id, now)
    except SQLAlchemyError as exc:
        raise StoreError(
            f"disposition of attempt {request.attempt_id}: {error_reason(exc)}"
        ) from exc
    result = DispositionResult(disposition_id, callback_id)
    effects = guard_effects(case, code)
    try:
        apply_guard_effects(guard, tenant_name, effects, now)
    except GuardError as exc:
        log.error(
            "x disposition %s of attempt %s: guard not updated: %s",
            disposition_id,
            case.attempt_id,
            exc,
        )
        raise ComplianceNotUpdated(disposition_id, callback_id, effects, str(exc)) from exc
    log.info(
        "= attempt %s disposition %s %s by %s%s",
        case.attempt_id,
        disposition_id,
        code.value,
        agent_id,
        f", callback {callback_id}" if callback_id is not None else "",
    )
    return result


def guard_effects(case: CallCase, code: DispositionCode) -> GuardEffects:
    """The flags a disposition sets and the outcome it gives the call in the guard's ledger.

    do_not_call and deceased are about the person (every phone, every debt); a dispute is about
    the debt the call was about; a wrong party makes the call count as such rather than as a
    conversation with the debtor (when the call's reservation is still open).
    """
    person = person_subject(case.debtor_id)
    if code is DispositionCode.DO_NOT_CALL:
        return GuardEffects(flags=(FlagToSet(Flag.DO_NOT_CALL, FlagScope.PERSON, person),))
    if code is DispositionCode.DECEASED:
        return GuardEffects(flags=(FlagToSet(Flag.DECEASED, FlagScope.PERSON, person),))
    if code is DispositionCode.DISPUTE:
        if case.debt_id is not None:
            target = FlagToSet(Flag.DISPUTE, FlagScope.DEBT, debt_subject(case.debt_id))
        else:
            target = FlagToSet(Flag.DISPUTE, FlagScope.PERSON, person)
        return GuardEffects(flags=(target,))
    if code is DispositionCode.WRONG_PARTY and case.reservation_id is not None:
        return GuardEffects(outcome=(case.reservation_id, ComplianceOutcome.WRONG_PARTY))
    return GuardEffects()


def apply_guard_effects(
    guard: Guard, tenant_name: str, effects: GuardEffects, now: datetime
) -> None:
    """Set the flags and give the outcome; safe to repeat. GuardError when the ledger fails."""
    for f in effects.flags:
        guard.set_flag(tenant_name, f.flag, f.scope, f.subject, now)
    if effects.outcome is not None:
        reservation_id, outcome = effects.outcome
        try:
            guard.record_outcome(reservation_id, outcome, now)
        except (ReservationClosed, UnknownReservation) as exc:
            # The dialer booked the call when it ended (a conversation, once an agent talked):
            # the ledger keeps that, the stricter of the two.
            log.info("= reservation %s keeps its outcome (%s)", reservation_id, exc)


def _check_fields(request: DispositionRequest, code: DispositionCode, now: datetime) -> None:
    """What can be checked without the database."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if code is DispositionCode.PROMISE_TO_PAY:
        if request.promise_amount is None or request.promise_amount <= 0:
            raise DispositionError("promise_amount", "a promise to pay needs an amount above 0")
        if request.promise_date is None:
            raise DispositionError("promise_date", "a promise to pay needs the date it is due")
    elif request.promise_amount is not None or request.promise_date is not None:
        field = "promise_amount" if request.promise_amount is not None else "promise_date"
        raise DispositionError(
            field, f"a promise is recorded with promise_to_pay, not {code.value}"
        )
    if code is DispositionCode.PARTIAL_PAYMENT and request.payment_amount is None:
        raise DispositionError("payment_amount", "a partial payment needs the amount paid")
    if request.payment_amount is not None and request.payment_amount <= 0:
        raise DispositionError("payment_amount", "the amount paid must be above 0")
    at = request.callback_at
    if code is DispositionCode.CALLBACK and at is None:
        raise DispositionError("callback_at", "a callback needs the time to call back")
    if at is None:
        return
    if code in _NO_CALLBACK:
        raise DispositionError("callback_at", f"no callback can be scheduled with {code.value}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise DispositionError("callback_at", "the callback time needs its time zone")
    if at <= now:
        raise DispositionError(
            "callback_at", f"the callback time {at.isoformat()} is not in the future"
        )
    if at > now + CALLBACK_HORIZON:
        raise DispositionError(
            "callback_at", f"a callback is at most {CALLBACK_HORIZON.days} days ahead"
        )


def _owned(case: CallCase | None, attempt_id: int, agent_id: str) -> CallCase:
    # The same answer whether the call is another agent's or another tenant's or none at all.
    if case is None or case.agent_id != agent_id:
        raise DispositionError("attempt_id", f"call {attempt_id} is not one of your calls")
    if case.disposition_id is not None:
        raise DispositionError(
            "attempt_id", f"a disposition is already recorded for call {attempt_id}"
        )
    return case


def _check_callback_with_guard(
    guard: Guard, tenant_name: str, case: CallCase, at: datetime
) -> None:
    """Ask the guard, without reserving, whether calling this debtor on this phone at `at`
    would be allowed as things stand now (the dialer asks again when the callback is due)."""
    # Not dated: the age limit on the debtor's record is for dialling now; the callback is
    # checked again, on a fresh read, when it is dialled.
    request = case.guard_request(tenant_name, facts_as_of=None)
    try:
        decision = guard.check(request, at)
    except GuardError as exc:
        raise DispositionError(
            "callback_at", f"the compliance guard cannot check this callback: {exc}"
        ) from exc
    if decision.allowed:
        return
    where = ", ".join(
        f"{at.astimezone(ZoneInfo(z)):%a %Y-%m-%d %H:%M} in {z}" for z in decision.zones
    )
    reasons = "; ".join(r.message for r in decision.reasons)
    message = f"the compliance guard would refuse a call at {where or at.isoformat()}: {reasons}"
    if decision.next_allowed_at is not None:
        message += f" (first allowed {decision.next_allowed_at.astimezone(UTC).isoformat()})"
    raise DispositionError("callback_at", message, next_allowed_at=decision.next_allowed_at)


def _lock_attempt(conn: Connection, attempt_id: int) -> None:
    """Serialize the dispositions of one attempt: the second one then sees the first."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the database's write lock, now
    else:
        conn.execute(select(CallAttempt.id).where(CallAttempt.id == attempt_id).with_for_update())


def _write(
    store: Store,
    case: CallCase,
    request: DispositionRequest,
    code: DispositionCode,
    agent_id: str,
    now: datetime,
) -> tuple[int, int | None]:
    """The disposition, its callback and the portfolio changes, in one transaction."""
    with store.begin() as conn:
        _lock_attempt(conn, case.attempt_id)
        taken = conn.execute(
            select(Disposition.id).where(Disposition.attempt_id == case.attempt_id).limit(1)
        ).first()
        if taken is not None:
            raise DispositionError(
                "attempt_id", f"a disposition is already recorded for call {case.attempt_id}"
            )
        disposition_id = int(
            conn.execute(
                insert(Disposition)
                .values(
                    tenant_id=case.tenant_id,
                    attempt_id=case.attempt_id,
                    agent_id=agent_id,
                    code=code.value,
                    promise_amount=request.promise_amount,
                    promise_date=request.promise_date,
                    payment_amount=request.payment_amount,
                    callback_at=request.callback_at,
                    note=request.note or None,
                    created_at=now,
                )
                .returning(Disposition.id)
            ).scalar_one()
        )
        cases.on_disposition(
            conn,
            tenant_id=case.tenant_id,
            debtor_id=case.debtor_id,
            debt_id=case.debt_id,
            disposition_id=disposition_id,
            code=code,
            promise_amount=request.promise_amount,
            promise_date=request.promise_date,
            agent_id=agent_id,
            now=now,
        )
        callback_id = None
        if request.callback_at is not None:
            callback_id = int(
                conn.execute(
                    insert(Callback)
                    .values(
                        tenant_id=case.tenant_id,
                        campaign_id=case.campaign_id,
                        debtor_id=case.debtor_id,
                        debt_id=case.debt_id,
                        phone_id=case.phone_id,
                        due_at=request.callback_at,
                        agent_id=agent_id if request.callback_same_agent else None,
                        status=CallbackStatus.PENDING.value,
                        disposition_id=disposition_id,
                        created_at=now,
                    )
                    .returning(Callback.id)
                ).scalar_one()
            )
        if code is DispositionCode.DO_NOT_CALL:
            # The hopper skips them from now on (and an import never clears the mark).
            conn.execute(
                update(Phone)
                .where(Phone.tenant_id == case.tenant_id, Phone.debtor_id == case.debtor_id)
                .values(do_not_call=True)
            )
        elif code is DispositionCode.DISPUTE and case.debt_id is not None:
            conn.execute(
                update(Debt)
                .where(Debt.id == case.debt_id, Debt.status == DebtStatus.OPEN.value)
                .values(status=DebtStatus.DISPUTED.value)
            )
    return disposition_id, callback_id
