"""The cases' HTTP API: read a case whole, add a note, a payment, a promise, change its status.

Who may do what (tenant-scoped: another tenant's case is not found):

=================  ================  ==========  =======
route              agent             supervisor  manager
=================  ================  ==========  =======
GET case           own cases         yes         yes
POST note          own cases         yes         yes
POST promise       own cases         yes         yes
POST payment       no                yes         yes
POST status        own, in_progress  yes         yes
=================  ================  ==========  =======

An agent's own cases are those assigned to them and those of debtors they have talked to. Admin
is admitted where supervisor and manager are. A refusal names the field and why (422), a repeated
payment id with other facts is a conflict (409).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dialer.cases import service
from dialer.cases.errors import CaseNotFound, CaseRefused, PaymentConflict
from dialer.cases.models import Actor, CaseStatus, CaseView, PaymentIn
from dialer.store.db import Store
from dialer.store.models import Role
from dialer.web.auth import Auth, Caller
from dialer.web.refusals import field_refused

CaseId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
Money = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=4)]
# What an agent may set by hand on a case of theirs; the rest is a supervisor's or manager's.
AGENT_STATUSES = frozenset({CaseStatus.IN_PROGRESS})


# ----- request bodies -----


class NoteBody(BaseModel):
    body: str = Field(min_length=1, max_length=service.MAX_NOTE)


class PaymentBody(BaseModel):
    payment_id: str = Field(min_length=1, max_length=64)
    amount: Money
    paid_on: date
    debt_id: str | None = Field(default=None, min_length=1, max_length=64)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    method: str | None = Field(default=None, max_length=32)
    reference: str | None = Field(default=None, max_length=100)


class PromiseBody(BaseModel):
    amount: Money
    due_date: date
    debt_id: str | None = Field(default=None, min_length=1, max_length=64)


class StatusBody(BaseModel):
    status: CaseStatus
    reason: str = Field(min_length=1, max_length=service.MAX_REASON)


# ----- response bodies -----


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class DebtRead(_Read):
    id: int
    external_id: str
    principal: Decimal
    balance: Decimal
    currency: str
    days_past_due: int
    status: str


class PromiseRead(_Read):
    id: int
    debt_id: int | None
    amount: Decimal
    currency: str
    promised_on: date
    due_date: date
    status: str
    created_by: str
    created_at: datetime
    resolved_at: datetime | None


class PaymentRead(_Read):
    id: int
    payment_id: str
    debt_id: int
    amount: Decimal
    currency: str
    paid_on: date
    method: str | None
    reference: str | None
    source: str
    recorded_by: str
    created_at: datetime


class NoteRead(_Read):
    id: int
    author: str
    body: str
    created_at: datetime


class HistoryRead(_Read):
    id: int
    field: str
    old_value: str | None
    new_value: str | None
    actor: str
    reason: str
    at: datetime


class TimelineRead(_Read):
    at: datetime
    kind: str
    ref: str
    actor: str | None
    summary: str
    data: dict[str, Any]


class ScoreTermRead(_Read):
    feature: str
    value: str
    points: float
    reason: str


class CaseRead(_Read):
    id: int
    debtor_id: int
    debtor_external_id: str
    debtor_name: str
    status: CaseStatus
    agent_id: str | None
    # Given to agent_id by hand: the nightly assignment leaves the case with them.
    agent_kept: bool
    opened_by: str
    created_at: datetime
    status_changed_at: datetime
    balance: dict[str, Decimal]
    debts: list[DebtRead]
    promises: list[PromiseRead]
    payments: list[PaymentRead]
    notes: list[NoteRead]
    history: list[HistoryRead]
    timeline: list[TimelineRead]
    # The nightly risk score term by term, the case's strategy, why, and any override.
    risk_score: float | None
    risk_band: str | None
    risk_terms: list[ScoreTermRead]
    scored_at: datetime | None
    strategy: str | None
    strategy_step: int | None
    strategy_since: date | None
    strategy_finished: bool
    strategy_reasons: list[str]
    override_by: str | None
    override_why: str | None
    override_at: datetime | None
    queued_campaign: str | None


class Created(BaseModel):
    id: int


class PaymentSaved(BaseModel):
    id: int
    created: bool
    balance_after: Decimal
    case_status: CaseStatus
    overpaid: Decimal


class StatusSaved(BaseModel):
    status: CaseStatus


def _read(view: CaseView) -> CaseRead:
    return CaseRead.model_validate(
        {
            **{k: getattr(view, k) for k in CaseRead.model_fields if k != "timeline"},
            "timeline": [TimelineRead.model_validate(e) for e in view.timeline],
        }
    )


def _refused(exc: CaseRefused) -> JSONResponse:
    return field_refused(
        exc.field, exc.message, status=409 if isinstance(exc, PaymentConflict) else 422
    )


def cases_router(store: Store, auth: Auth, clock: Callable[[], datetime]) -> APIRouter:
    """The routes under /api/cases, served with the store and the sign-in of the pages."""
    router = APIRouter(prefix="/api/cases", tags=["cases"])
    workers = Depends(auth.require(Role.AGENT, Role.SUPERVISOR, Role.MANAGER))
    managers = Depends(auth.require(Role.SUPERVISOR, Role.MANAGER))

    def actor(caller: Caller) -> Actor:
        return Actor.user(caller.username)

    async def reach(caller: Caller, case_id: int) -> None:
        """404 for a case the tenant has not; 403 (audited) for another agent's."""
        try:
            if caller.role is Role.AGENT:
                mine = caller.agent_id is not None and await asyncio.to_thread(
                    service.agent_works, store, caller.tenant_id, case_id, caller.agent_id
                )
                if not mine:
                    await auth.forbid(caller, f"case {case_id} is not one of your cases")
            else:
                await asyncio.to_thread(service.require_case, store, caller.tenant_id, case_id)
        except CaseNotFound:
            raise HTTPException(404, f"no case {case_id}") from None

    @router.get("/{case_id}", responses={403: {}, 404: {}})
    async def read_case(
        case_id: CaseId,
        caller: Caller = workers,
        timeline_limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> CaseRead:
        """The case with its debts, promises, payments, notes, history and its newest
        `timeline_limit` timeline entries (oldest first)."""
        await reach(caller, case_id)
        try:
            view = await asyncio.to_thread(
                service.get_case, store, caller.tenant_id, case_id, timeline_limit=timeline_limit
            )
        except CaseNotFound:
            raise HTTPException(404, f"no case {case_id}") from None
        return _read(view)

    @router.post("/{case_id}/notes", status_code=201, responses={403: {}, 404: {}, 422: {}})
    async def add_note(case_id: CaseId, body: NoteBody, caller: Caller = workers) -> Any:
        await reach(caller, case_id)
        try:
            new_id = await asyncio.to_thread(
                service.add_note,
                store,
                caller.tenant_id,
                case_id,
                body.body,
                actor(caller),
                clock(),
            )
        except CaseRefused as exc:
            return _refused(exc)
        return Created(id=new_id)

    @router.post("/{case_id}/promises", status_code=201, responses={403: {}, 404: {}, 422: {}})
    async def add_promise(case_id: CaseId, body: PromiseBody, caller: Caller = workers) -> Any:
        await reach(caller, case_id)
        try:
            new_id = await asyncio.to_thread(
                service.make_promise,
                store,
                caller.tenant_id,
                case_id,
                body.amount,
                body.due_date,
                actor(caller),
                clock(),
                debt=body.debt_id,
            )
        except CaseRefused as exc:
            return _refused(exc)
        return Created(id=new_id)

    @router.post("/{case_id}/payments", responses={403: {}, 404: {}, 409: {}, 422: {}})
    async def add_payment(case_id: CaseId, body: PaymentBody, caller: Caller = managers) -> Any:
        """Record a payment; 201 when new, 200 when this payment id was already recorded with
        the same facts (nothing changes), 409 when it was recorded with others."""
        await reach(caller, case_id)
        payment = PaymentIn(
            payment_id=body.payment_id,
            amount=body.amount,
            paid_on=body.paid_on,
            debt=body.debt_id,
            currency=body.currency,
            method=body.method,
            reference=body.reference,
        )
        try:
            result = await asyncio.to_thread(
                service.post_payment,
                store,
                caller.tenant_id,
                case_id,
                payment,
                actor(caller),
                clock(),
            )
        except CaseRefused as exc:
            return _refused(exc)
        saved = PaymentSaved(
            id=result.id,
            created=result.created,
            balance_after=result.balance_after,
            case_status=CaseStatus(result.case_status),
            overpaid=result.overpaid,
        )
        return JSONResponse(
            saved.model_dump(mode="json"), status_code=201 if result.created else 200
        )

    @router.post("/{case_id}/status", responses={403: {}, 404: {}, 422: {}})
    async def change_status(case_id: CaseId, body: StatusBody, caller: Caller = workers) -> Any:
        await reach(caller, case_id)
        if caller.role is Role.AGENT and body.status not in AGENT_STATUSES:
            allowed = ", ".join(sorted(AGENT_STATUSES))
            await auth.forbid(caller, f"an agent may set a case to {allowed} only")
        try:
            new = await asyncio.to_thread(
                service.change_status,
                store,
                caller.tenant_id,
                case_id,
                body.status,
                actor(caller),
                body.reason,
                clock(),
            )
        except CaseRefused as exc:
            return _refused(exc)
        return StatusSaved(status=new)

    return router
