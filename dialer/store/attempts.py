"""What the dialer engine asks of the store: tenants, campaigns, whom to call next, attempt rows.

Each function is one short transaction on Core statements (no ORM objects), so the engine can
write a hundred attempt rows a second without holding locks or building identity maps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dialer.calls.models import AttemptStatus, Outcome
from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import (
    Agent,
    Base,
    CallAttempt,
    Campaign,
    CampaignListEntry,
    CampaignSegment,
    CampaignStatus,
    Debt,
    Debtor,
    DebtStatus,
    Disposition,
    DispositionCode,
    Phone,
    Tenant,
)


@dataclass(frozen=True)
class DialCandidate:
    """One number to dial for one debtor, with the debt the call is about."""

    debtor_id: int
    debt_id: int | None
    phone_id: int
    e164: str
    phone_type: str
    timezone: str | None  # the phone's explicit zone, else the debtor's, else None
    debtor_external_id: str


@dataclass(frozen=True)
class NewAttempt:
    """The attempt row written before the Originate leaves."""

    tenant_id: int
    campaign_id: int
    debtor_id: int
    debt_id: int | None
    phone_id: int
    node_id: str
    server: str
    uniqueid: str | None
    dialed_at: datetime
    status: AttemptStatus = AttemptStatus.DIALING
    reservation_id: str | None = None


@dataclass(frozen=True)
class AttemptChange:
    """Fields to change on an attempt; None leaves the stored value as it is."""

    status: AttemptStatus | None = None
    outcome: Outcome | None = None
    abandoned: bool | None = None
    reason: int | None = None
    answered_at: datetime | None = None
    connected_at: datetime | None = None
    hungup_at: datetime | None = None
    hangup_cause: int | None = None
    linkedid: str | None = None
    channel: str | None = None
    agent_id: str | None = None
    recording_path: str | None = None
    amd_status: str | None = None
    uniqueid: str | None = None


@dataclass(frozen=True)
class AttemptRow:
    id: int
    tenant_id: int
    campaign_id: int
    debtor_id: int
    debt_id: int | None
    phone_id: int
    status: AttemptStatus
    outcome: Outcome | None
    abandoned: bool
    reason: int | None
    dialed_at: datetime
    answered_at: datetime | None
    connected_at: datetime | None
    hungup_at: datetime | None
    hangup_cause: int | None
    server: str
    node_id: str
    uniqueid: str | None
    linkedid: str | None
    channel: str | None
    agent_id: str | None
    recording_path: str | None
    amd_status: str | None
    reservation_id: str | None = None


@dataclass(frozen=True)
class CampaignTotals:
    attempts: int
    answered: int  # outcome `answered`: a live person picked up
    connected: int  # reached an agent
    abandoned: int
    outcomes: Mapping[str, int]  # every Outcome value, 0 when none
    talk_seconds: float  # sum of connected -> hung up


def _fail(what: str, exc: SQLAlchemyError) -> StoreError:
    return StoreError(f"{what}: {error_reason(exc)}")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def ensure_tenant(store: Store, name: str, *, now: datetime | None = None) -> int:
    """The tenant's id, creating the tenant on first use."""
    if not name.strip():
        raise StoreError("tenant name is empty")
    try:
        with store.begin() as conn:
            found = conn.execute(select(Tenant.id).where(Tenant.name == name)).scalar()
            if found is not None:
                return int(found)
            new_id = conn.execute(
                insert(Tenant).values(name=name, created_at=now or _utc_now()).returning(Tenant.id)
            ).scalar_one()
            return int(new_id)
    except IntegrityError:
        # Another node created it between our read and write: read theirs.
        with store.begin() as conn:
            return int(conn.execute(select(Tenant.id).where(Tenant.name == name)).scalar_one())
    except SQLAlchemyError as exc:
        raise _fail(f"tenant {name!r}", exc) from exc


def ensure_campaign(
    store: Store,
    tenant_id: int,
    name: str,
    dial_mode: str,
    *,
    settings: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> int:
    """The campaign's id, creating it on first use; an existing campaign keeps its dial mode."""
    if not name.strip():
        raise StoreError("campaign name is empty")
    where = and_(Campaign.tenant_id == tenant_id, Campaign.name == name)
    try:
        with store.begin() as conn:
            found = conn.execute(select(Campaign.id).where(where)).scalar()
            if found is not None:
                return int(found)
            new_id = conn.execute(
                insert(Campaign)
                .values(
                    tenant_id=tenant_id,
                    name=name,
                    dial_mode=dial_mode,
                    status=CampaignStatus.ACTIVE.value,
                    settings=dict(settings or {}),
                    created_at=now or _utc_now(),
                )
                .returning(Campaign.id)
            ).scalar_one()
            return int(new_id)
    except IntegrityError:
        with store.begin() as conn:
            return int(conn.execute(select(Campaign.id).where(where)).scalar_one())
    except SQLAlchemyError as exc:
        raise _fail(f"campaign {name!r} of tenant {tenant_id}", exc) from exc


_MAX_EXCLUDED_IN_SQL = 1_000


def next_candidates(
    store: Store,
    campaign_id: int,
    limit: int,
    exclude_phone_ids: Collection[int] = (),
    *,
    max_attempts_per_phone: int = 1,
) -> list[DialCandidate]:
    """Whom to dial next: at most one phone per debtor, highest balance first.

    A phone qualifies when it has consent, is not on the do-not-call list, belongs to a debtor
    of the campaign's tenant with an open debt whose balance is above zero, and has had fewer
    than `max_attempts_per_phone` attempts in this campaign. A debtor with a call still in
    progress (any campaign) is skipped, so nobody is rung on two lines at once. Of a debtor's
    phones, the least-tried comes first. A campaign that loaded its call list from a segment
    (dialer/cases/segments.py) dials only the debtors on that list.
    """
    if limit <= 0:
        return []
    a = CallAttempt
    tries = (
        select(func.count())
        .where(a.campaign_id == campaign_id, a.phone_id == Phone.id)
        .scalar_subquery()
    )
    in_progress = [s.value for s in AttemptStatus if s.in_progress]
    busy_debtors = select(a.debtor_id).where(a.status.in_(in_progress))
    phone_ok: list[ColumnElement[bool]] = [
        Phone.consent.is_(True),
        Phone.do_not_call.is_(False),
        tries < max_attempts_per_phone,
    ]
    # A long exclusion list would overrun the drivers' bound-parameter limits (SQLite: 32766),
    # so past a thousand phones the exclusion happens here instead of in SQL.
    excluded_here: frozenset[int] = frozenset()
    if len(exclude_phone_ids) > _MAX_EXCLUDED_IN_SQL:
        excluded_here = frozenset(exclude_phone_ids)
    elif exclude_phone_ids:
        phone_ok.append(Phone.id.not_in(list(exclude_phone_ids)))
    page = limit * 2 + 20
    chosen: dict[int, DialCandidate] = {}
    try:
        with store.begin() as conn:
            tenant_id = conn.execute(
                select(Campaign.tenant_id).where(Campaign.id == campaign_id)
            ).scalar()
            if tenant_id is None:
                raise StoreError(f"campaign {campaign_id} does not exist")
            on_list: list[ColumnElement[bool]] = []
            if conn.execute(
                select(CampaignSegment.campaign_id).where(
                    CampaignSegment.campaign_id == campaign_id
                )
            ).first():
                on_list.append(
                    exists().where(
                        CampaignListEntry.campaign_id == campaign_id,
                        CampaignListEntry.debtor_id == Debt.debtor_id,
                    )
                )
            # Debts in the order of the (tenant, status, balance DESC, id) index, so the
            # database stops at the LIMIT instead of ranking the whole portfolio.
            debts = (
                select(Debt.id, Debt.debtor_id, Debt.balance)
                .where(
                    Debt.tenant_id == tenant_id,
                    Debt.status == DebtStatus.OPEN.value,
                    Debt.balance > 0,
                    Debt.debtor_id.not_in(busy_debtors),
                    exists().where(Phone.debtor_id == Debt.debtor_id, *phone_ok),
                    *on_list,
                )
                .order_by(Debt.balance.desc(), Debt.id)
                .limit(page)
            )
            query = debts
            while len(chosen) < limit:
                page_rows = conn.execute(query).all()
                first_debt: dict[int, int] = {}  # debtor -> their largest debt in this page
                for row in page_rows:
                    if row.debtor_id not in chosen and row.debtor_id not in first_debt:
                        first_debt[row.debtor_id] = row.id
                if first_debt:
                    _choose_phones(conn, first_debt, phone_ok, tries, excluded_here, chosen, limit)
                if len(page_rows) < page:
                    break
                last = page_rows[-1]
                query = debts.where(
                    or_(
                        Debt.balance < last.balance,
                        and_(Debt.balance == last.balance, Debt.id > last.id),
                    )
                )
    except SQLAlchemyError as exc:
        raise _fail(f"next candidates of campaign {campaign_id}", exc) from exc
    return list(chosen.values())


def _choose_phones(
    conn: Connection,
    first_debt: dict[int, int],
    phone_ok: list[ColumnElement[bool]],
    tries: Any,
    excluded: frozenset[int],
    chosen: dict[int, DialCandidate],
    limit: int,
) -> None:
    """Give each debtor (in debt order) their least-tried qualifying phone, oldest first."""
    rows = conn.execute(
        select(
            Phone.debtor_id,
            Phone.id,
            Phone.e164,
            Phone.phone_type,
            func.coalesce(Phone.timezone, Debtor.timezone).label("timezone"),
            Debtor.external_id,
            tries.label("tries"),
        )
        .join(Debtor, Debtor.id == Phone.debtor_id)
        .where(Phone.debtor_id.in_(list(first_debt)), *phone_ok)
    ).all()
    best: dict[int, Any] = {}
    for row in rows:
        if row.id in excluded:
            continue
        held = best.get(row.debtor_id)
        if held is None or (row.tries, row.id) < (held.tries, held.id):
            best[row.debtor_id] = row
    for debtor_id, debt_id in first_debt.items():  # dict order is debt order
        phone = best.get(debtor_id)
        if phone is None or len(chosen) >= limit:
            continue
        chosen[debtor_id] = DialCandidate(
            debtor_id=debtor_id,
            debt_id=debt_id,
            phone_id=phone.id,
            e164=phone.e164,
            phone_type=phone.phone_type,
            timezone=phone.timezone,
            debtor_external_id=phone.external_id,
        )


# Built once: the engine writes these many times a second, and a statement passed its values as
# parameters (not through .values()) is compiled once per set of columns and then reused.
_ATTEMPTS: Table = Base.metadata.tables[CallAttempt.__tablename__]
_INSERT_ATTEMPT = insert(_ATTEMPTS).returning(_ATTEMPTS.c.id)
_UPDATE_ATTEMPT = update(_ATTEMPTS).where(_ATTEMPTS.c.id == bindparam("_attempt_id"))
_NEW_ATTEMPT_FIELDS = tuple(f.name for f in dataclasses.fields(NewAttempt))
_ATTEMPT_CHANGE_FIELDS = tuple(f.name for f in dataclasses.fields(AttemptChange))


def create_attempt(store: Store, new: NewAttempt) -> int:
    """Write the attempt row (before the Originate is sent) and return its id."""
    return create_attempts(store, [new])[0]


def create_attempts(store: Store, new: Sequence[NewAttempt]) -> list[int]:
    """Write a tick's attempt rows in one transaction (one durable commit); their ids in order."""
    rows = []
    for attempt in new:
        values = {field: getattr(attempt, field) for field in _NEW_ATTEMPT_FIELDS}
        values["status"] = AttemptStatus(attempt.status).value
        values["abandoned"] = False
        rows.append(values)
    try:
        with store.begin() as conn:
            return [int(conn.execute(_INSERT_ATTEMPT, values).scalar_one()) for values in rows]
    except SQLAlchemyError as exc:
        phones = ", ".join(str(a.phone_id) for a in new)
        raise _fail(f"new attempts for phones {phones}", exc) from exc


def _change_values(attempt_id: int, change: AttemptChange) -> dict[str, Any]:
    """The columns `change` sets (its non-None fields), as stored."""
    values: dict[str, Any] = {
        name: value
        for name in _ATTEMPT_CHANGE_FIELDS
        if (value := getattr(change, name)) is not None
    }
    try:
        if "status" in values:
            values["status"] = AttemptStatus(values["status"]).value
        if "outcome" in values:
            values["outcome"] = Outcome(values["outcome"]).value
    except ValueError as exc:
        raise StoreError(f"attempt {attempt_id}: {exc}") from exc
    return values


def discard_attempt(store: Store, attempt_id: int) -> None:
    """Remove the row of an Originate that never reached the network (the server refused it or
    was gone before it was sent): no call was placed, so it must not count as a try."""
    try:
        with store.begin() as conn:
            conn.execute(delete(_ATTEMPTS).where(_ATTEMPTS.c.id == attempt_id))
    except SQLAlchemyError as exc:
        raise _fail(f"discarding attempt {attempt_id}", exc) from exc


def update_attempt(store: Store, attempt_id: int, change: AttemptChange) -> None:
    """Apply the non-None fields of `change`; StoreError if the attempt does not exist."""
    missing = update_attempts(store, [(attempt_id, change)])
    if missing:
        raise StoreError(f"attempt {attempt_id} does not exist")


def update_attempts(store: Store, changes: Sequence[tuple[int, AttemptChange]]) -> list[int]:
    """Apply several changes, in order, in one transaction (one durable commit); returns the
    ids of attempts that do not exist (their changes are skipped, the others applied).

    StoreError for a change that cannot be stored (a bad status or outcome) before anything is
    written, or when the database fails (then nothing is written)."""
    planned = [(attempt_id, _change_values(attempt_id, change)) for attempt_id, change in changes]
    missing = []
    try:
        with store.begin() as conn:
            for attempt_id, values in planned:
                if not values:
                    continue
                result = conn.execute(_UPDATE_ATTEMPT, {"_attempt_id": attempt_id, **values})
                if result.rowcount == 0:
                    missing.append(attempt_id)
    except SQLAlchemyError as exc:
        ids = ", ".join(str(attempt_id) for attempt_id, _ in planned)
        raise _fail(f"update of attempts {ids}", exc) from exc
    return missing


def _attempt_row(row: Any) -> AttemptRow:
    return AttemptRow(
        id=row.id,
        tenant_id=row.tenant_id,
        campaign_id=row.campaign_id,
        debtor_id=row.debtor_id,
        debt_id=row.debt_id,
        phone_id=row.phone_id,
        status=AttemptStatus(row.status),
        outcome=Outcome(row.outcome) if row.outcome is not None else None,
        abandoned=bool(row.abandoned),
        reason=row.reason,
        dialed_at=row.dialed_at,
        answered_at=row.answered_at,
        connected_at=row.connected_at,
        hungup_at=row.hungup_at,
        hangup_cause=row.hangup_cause,
        server=row.server,
        node_id=row.node_id,
        uniqueid=row.uniqueid,
        linkedid=row.linkedid,
        channel=row.channel,
        agent_id=row.agent_id,
        recording_path=row.recording_path,
        reservation_id=row.reservation_id,
        amd_status=row.amd_status,
    )


def get_attempt(store: Store, attempt_id: int) -> AttemptRow | None:
    """The attempt row, or None if there is no such attempt."""
    try:
        with store.begin() as conn:
            row = conn.execute(select(_ATTEMPTS).where(_ATTEMPTS.c.id == attempt_id)).first()
    except SQLAlchemyError as exc:
        raise _fail(f"attempt {attempt_id}", exc) from exc
    return _attempt_row(row) if row is not None else None


def attempt_by_uniqueid(store: Store, uniqueid: str) -> AttemptRow | None:
    """The attempt whose channel has this Asterisk Uniqueid (the newest, should two share it)."""
    query = (
        select(_ATTEMPTS).where(_ATTEMPTS.c.uniqueid == uniqueid).order_by(_ATTEMPTS.c.id.desc())
    )
    try:
        with store.begin() as conn:
            row = conn.execute(query).first()
    except SQLAlchemyError as exc:
        raise _fail(f"attempt with uniqueid {uniqueid!r}", exc) from exc
    return _attempt_row(row) if row is not None else None


def ensure_agent(store: Store, tenant_id: int, external_id: str, name: str, channel: str) -> int:
    """The agent's row id, created on first use; name and channel follow the latest config."""
    agents = Base.metadata.tables[Agent.__tablename__]
    where = and_(agents.c.tenant_id == tenant_id, agents.c.external_id == external_id)
    try:
        with store.begin() as conn:
            found = conn.execute(select(agents.c.id).where(where)).scalar()
            if found is not None:
                conn.execute(update(agents).where(where).values(name=name, channel=channel))
                return int(found)
            values = {
                "tenant_id": tenant_id,
                "external_id": external_id,
                "name": name,
                "channel": channel,
            }
            return int(conn.execute(insert(agents).returning(agents.c.id), values).scalar_one())
    except IntegrityError:
        with store.begin() as conn:
            return int(conn.execute(select(agents.c.id).where(where)).scalar_one())
    except SQLAlchemyError as exc:
        raise _fail(f"agent {external_id!r} of tenant {tenant_id}", exc) from exc


def attempts_in_progress(store: Store, node_id: str | None = None) -> list[AttemptRow]:
    """Attempts not yet ended (of one dialer node, or all): what to reconcile after a restart."""
    query = select(_ATTEMPTS).where(CallAttempt.status != AttemptStatus.ENDED.value)
    if node_id is not None:
        query = query.where(CallAttempt.node_id == node_id)
    try:
        with store.begin() as conn:
            rows = conn.execute(query.order_by(CallAttempt.id)).all()
    except SQLAlchemyError as exc:
        raise _fail("attempts in progress", exc) from exc
    return [_attempt_row(row) for row in rows]


def _seconds_between(store: Store, start: Any, end: Any) -> ColumnElement[Any]:
    if store.dialect == "sqlite":
        # Stored as ISO text in UTC; julianday() reads it, with sub-second precision.
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


def last_attempt_id(store: Store) -> int:
    """The largest attempt id so far (0 with none): attempts written later get larger ones."""
    try:
        with store.begin() as conn:
            last = conn.execute(select(func.max(CallAttempt.id))).scalar()
    except SQLAlchemyError as exc:
        raise _fail("last attempt id", exc) from exc
    return int(last or 0)


def campaign_totals(
    store: Store, campaign_id: int, *, node_id: str | None = None, after_attempt_id: int = 0
) -> CampaignTotals:
    """Counts for the campaign summary, from the attempt rows; with `node_id` and
    `after_attempt_id`, only that node's attempts written after that one (one run's)."""
    a = CallAttempt
    where = [a.campaign_id == campaign_id, a.id > after_attempt_id]
    if node_id is not None:
        where.append(a.node_id == node_id)
    talk = case(
        (
            and_(a.connected_at.is_not(None), a.hungup_at.is_not(None)),
            _seconds_between(store, a.connected_at, a.hungup_at),
        ),
        else_=None,
    )
    totals_query = select(
        func.count(),
        func.count(a.connected_at),
        func.coalesce(func.sum(case((a.abandoned.is_(True), 1), else_=0)), 0),
        func.coalesce(func.sum(talk), 0),
    ).where(*where)
    outcome_query = (
        select(a.outcome, func.count()).where(*where, a.outcome.is_not(None)).group_by(a.outcome)
    )
    try:
        with store.begin() as conn:
            attempts, connected, abandoned, talk_seconds = conn.execute(totals_query).one()
            by_outcome = {str(k): int(v) for k, v in conn.execute(outcome_query).all()}
    except SQLAlchemyError as exc:
        raise _fail(f"totals of campaign {campaign_id}", exc) from exc
    outcomes = {o.value: by_outcome.pop(o.value, 0) for o in Outcome}
    # Values written by a newer version are still counted, not silently dropped.
    outcomes.update(by_outcome)
    return CampaignTotals(
        attempts=int(attempts),
        answered=outcomes[Outcome.ANSWERED.value],
        connected=int(connected),
        abandoned=int(abandoned),
        outcomes=outcomes,
        talk_seconds=round(float(talk_seconds), 3),
    )


def record_disposition(
    store: Store,
    attempt_id: int,
    agent_id: str,
    code: str,
    *,
    promise_amount: Decimal | None = None,
    promise_date: date | None = None,
    callback_at: datetime | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> int:
    """Record what the agent concluded about the call; returns the disposition id.

    A promise to pay needs a positive amount and a date; a callback needs its time.
    """
    try:
        disposition = DispositionCode(code)
    except ValueError as exc:
        known = ", ".join(c.value for c in DispositionCode)
        raise StoreError(f"attempt {attempt_id}: unknown disposition {code!r} ({known})") from exc
    if disposition is DispositionCode.PROMISE_TO_PAY and (
        promise_amount is None or promise_amount <= 0 or promise_date is None
    ):
        raise StoreError(
            f"attempt {attempt_id}: promise_to_pay needs a positive promise_amount and a promise_date"
        )
    if disposition is DispositionCode.CALLBACK and callback_at is None:
        raise StoreError(f"attempt {attempt_id}: callback needs callback_at")
    try:
        with store.begin() as conn:
            tenant_id = conn.execute(
                select(CallAttempt.tenant_id).where(CallAttempt.id == attempt_id)
            ).scalar()
            if tenant_id is None:
                raise StoreError(f"attempt {attempt_id} does not exist")
            new_id = conn.execute(
                insert(Disposition)
                .values(
                    tenant_id=tenant_id,
                    attempt_id=attempt_id,
                    agent_id=agent_id,
                    code=disposition.value,
                    promise_amount=promise_amount,
                    promise_date=promise_date,
                    callback_at=callback_at,
                    note=note,
                    created_at=now or _utc_now(),
                )
                .returning(Disposition.id)
            ).scalar_one()
            return int(new_id)
    except SQLAlchemyError as exc:
        raise _fail(f"disposition of attempt {attempt_id}", exc) from exc
