"""The messaging HTTP API: a debtor's message log for the pages, and the SMS gateway's webhooks
(delivery receipts, inbound replies: STOP / 退订 opts the number out at once).

The webhooks are called by the gateway, not a person: they take `Authorization: Bearer <token>`
with the token from DIALER_MESSAGING_WEBHOOK_TOKEN, and answer 404 while none is set: the endpoint is off, as if absent."""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from sqlalchemy import select

from compliance_guard.service import Guard
from dialer.messaging.http_sms import parse_receipt
from dialer.messaging.service import MessagingService, MessagingSettings, messages_for_debtor
from dialer.store.db import Store
from dialer.store.models import Debtor, Role
from dialer.web.auth import Auth, Caller

DebtorId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


class ReceiptBody(BaseModel):
    id: str = Field(min_length=1, max_length=100)
    status: str = Field(pattern=r"^(delivered|failed)$")
    at: datetime | None = None
    detail: str = Field(default="", max_length=500)


class InboundBody(BaseModel):
    sender: str = Field(alias="from", min_length=3, max_length=32)
    text: str = Field(max_length=2000)


class MessageRead(BaseModel):
    id: int
    direction: str
    channel: str
    at: datetime
    status: str
    recipient: str
    subject: str | None
    body: str
    template: str | None
    decision: dict[str, Any] | None
    events: list[dict[str, Any]]


def messaging_router(
    store: Store,
    auth: Auth,
    guard: Guard,
    tenant: str,
    *,
    clock: Callable[[], datetime],
    env: Mapping[str, str] | None = None,
) -> APIRouter:
    router = APIRouter(prefix="/api/messaging", tags=["messaging"])
    managers = Depends(auth.require(Role.SUPERVISOR, Role.MANAGER))
    token = (os.environ if env is None else env).get("DIALER_MESSAGING_WEBHOOK_TOKEN", "")

    def service() -> MessagingService:
        # No providers: receipts and replies send nothing.
        return MessagingService(store, guard, {}, MessagingSettings(tenant=tenant), clock=clock)

    def gateway(authorization: Annotated[str | None, Header()] = None) -> None:
        if not token:
            raise HTTPException(404, "webhooks are off: set DIALER_MESSAGING_WEBHOOK_TOKEN")
        given = (authorization or "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "bad webhook token")

    @router.get("/debtors/{debtor_id}/messages", responses={404: {}})
    async def debtor_messages(debtor_id: DebtorId, caller: Caller = managers) -> list[MessageRead]:
        """Every SMS and e-mail to and from the debtor, oldest first, with the guard's decision
        and each message's history."""

        def read() -> list[MessageRead] | None:
            with store.begin() as conn:
                found = conn.execute(
                    select(Debtor.id).where(
                        Debtor.id == debtor_id, Debtor.tenant_id == caller.tenant_id
                    )
                ).scalar()
            if found is None:
                return None
            return [
                MessageRead(
                    id=v.id,
                    direction=v.direction,
                    channel=v.channel,
                    at=v.at,
                    status=v.status,
                    recipient=v.recipient,
                    subject=v.subject,
                    body=v.body,
                    template=v.template,
                    decision=v.decision,
                    events=[{"at": at, "kind": kind, "detail": d} for at, kind, d in v.events],
                )
                for v in messages_for_debtor(store, caller.tenant_id, debtor_id)
            ]

        views = await asyncio.to_thread(read)
        if views is None:
            raise HTTPException(404, f"no debtor {debtor_id}")
        return views

    @router.post("/receipts", dependencies=[Depends(gateway)], responses={401: {}, 404: {}})
    async def receipts(body: list[ReceiptBody]) -> dict[str, int]:
        """Delivery receipts called back by the SMS gateway (the http_sms.py contract)."""
        parsed = []
        for i, item in enumerate(body):
            raw = item.model_dump()
            raw["at"] = (item.at or clock()).isoformat()
            try:
                parsed.append(parse_receipt(raw))
            except ValueError as exc:
                raise HTTPException(422, f"[{i}]: {exc}") from None
        matched = await asyncio.to_thread(lambda: service().apply_receipts(parsed))
        return {"received": len(parsed), "matched": matched}

    @router.post("/inbound", dependencies=[Depends(gateway)], responses={401: {}, 404: {}})
    async def inbound(body: InboundBody) -> dict[str, Any]:
        """A reply from a debtor's number; STOP / 退订 and variants opt the number out."""
        result = await asyncio.to_thread(lambda: service().handle_inbound(body.sender, body.text))
        return {
            "opted_out": result.opted_out,
            "flags": list(result.flags),
            "channels_refused": [c.value for c in result.channels_refused],
        }

    return router
