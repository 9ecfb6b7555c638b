"""The call an agent is on, read in one query: attempt, campaign, debtor, phone, address."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, func, select

from compliance_guard.models import AttemptRequest
from compliance_guard.zones import ZoneResolver
from dialer.guard_names import guard_request
from dialer.store.attempts import DialCandidate
from dialer.store.models import (
    Address,
    CallAttempt,
    Campaign,
    Case,
    Debtor,
    Disposition,
    Phone,
)


@dataclass(frozen=True)
class CallCase:
    """One attempt with what the desk needs around it, as stored."""

    attempt_id: int
    tenant_id: int
    campaign_id: int
    campaign_name: str
    agent_id: str | None
    reservation_id: str | None
    dialed_at: datetime
    debtor_id: int
    debtor_name: str
    debtor_external_id: str
    debtor_timezone: str | None
    debt_id: int | None
    phone_id: int
    e164: str
    phone_type: str
    phone_timezone: str | None
    phone_consent: bool
    phone_do_not_call: bool
    postal_code: str | None
    country: str | None
    region: str | None
    disposition_id: int | None  # the disposition already recorded for this attempt, if any
    # The debtor's case: its strategy, the step it is on and its risk band (migration 0011).
    strategy: str | None = None
    strategy_step: int | None = None
    risk_band: str | None = None

    @property
    def timezone(self) -> str | None:
        """The explicit zone the dialer gives the guard: the phone's, else the debtor's."""
        return self.phone_timezone or self.debtor_timezone

    def candidate(self) -> DialCandidate:
        """The attempt's debtor, debt and phone as the dialer's hopper would hand them over."""
        return DialCandidate(
            debtor_id=self.debtor_id,
            debt_id=self.debt_id,
            phone_id=self.phone_id,
            e164=self.e164,
            phone_type=self.phone_type,
            timezone=self.timezone,
            debtor_external_id=self.debtor_external_id,
        )

    def guard_request(self, tenant: str, *, facts_as_of: datetime | None) -> AttemptRequest:
        """The request the dialer's gate would make for calling this debtor on this phone."""
        return guard_request(
            tenant, self.campaign_id, self.candidate(), self, facts_as_of=facts_as_of
        )

    def zones(self, resolver: ZoneResolver) -> tuple[str, ...]:
        """The zones the guard evaluates calling windows in (explicit, address, number)."""
        # Resolution reads only the number, the explicit zone and the address.
        request = self.guard_request(str(self.tenant_id), facts_as_of=None)
        return resolver.resolve(request).zones


def local_today(zones: tuple[str, ...], now: datetime) -> date:
    """The debtor's date: the earliest local date among their zones (UTC when none is known),
    so "today" is never refused because it is already tomorrow in one of them."""
    if not zones:
        return now.astimezone(UTC).date()
    return min(now.astimezone(ZoneInfo(z)).date() for z in zones)


def _case_query() -> Any:
    a = CallAttempt
    first_address = (
        select(func.min(Address.id))
        .where(Address.debtor_id == a.debtor_id)
        .correlate(a)
        .scalar_subquery()
    )
    disposition = (
        select(func.min(Disposition.id))
        .where(Disposition.attempt_id == a.id)
        .correlate(a)
        .scalar_subquery()
    )
    return (
        select(
            a.id,
            a.tenant_id,
            a.campaign_id,
            Campaign.name.label("campaign_name"),
            a.agent_id,
            a.reservation_id,
            a.dialed_at,
            a.debtor_id,
            Debtor.full_name,
            Debtor.external_id.label("debtor_external_id"),
            Debtor.timezone.label("debtor_timezone"),
            a.debt_id,
            a.phone_id,
            Phone.e164,
            Phone.phone_type,
            Phone.timezone.label("phone_timezone"),
            Phone.consent,
            Phone.do_not_call,
            Address.postal_code,
            Address.country,
            Address.region,
            disposition.label("disposition_id"),
            Case.strategy,
            Case.strategy_step,
            Case.risk_band,
        )
        .join(Campaign, Campaign.id == a.campaign_id)
        .join(Debtor, Debtor.id == a.debtor_id)
        .join(Phone, Phone.id == a.phone_id)
        .outerjoin(Address, Address.id == first_address)
        .outerjoin(Case, Case.debtor_id == a.debtor_id)
        .where(a.id == bindparam("attempt_id"), a.tenant_id == bindparam("tenant_id"))
    )


# Built once: a pop is read for every answered call, and a statement object reused is neither
# rebuilt nor matched to its cached compilation column by column.
_CASE = _case_query()


def read_case(conn: Connection, tenant_id: int, attempt_id: int) -> CallCase | None:
    """The attempt with its campaign, debtor, phone dialled, first address and disposition;
    None when the attempt is not one of the tenant's."""
    row: Any = conn.execute(_CASE, {"attempt_id": attempt_id, "tenant_id": tenant_id}).first()
    if row is None:
        return None
    return CallCase(
        attempt_id=int(row.id),
        tenant_id=int(row.tenant_id),
        campaign_id=int(row.campaign_id),
        campaign_name=row.campaign_name,
        agent_id=row.agent_id,
        reservation_id=row.reservation_id,
        dialed_at=row.dialed_at,
        debtor_id=int(row.debtor_id),
        debtor_name=row.full_name,
        debtor_external_id=row.debtor_external_id,
        debtor_timezone=row.debtor_timezone,
        debt_id=row.debt_id,
        phone_id=int(row.phone_id),
        e164=row.e164,
        phone_type=row.phone_type,
        phone_timezone=row.phone_timezone,
        phone_consent=bool(row.consent),
        phone_do_not_call=bool(row.do_not_call),
        postal_code=row.postal_code,
        country=row.country,
        region=row.region,
        disposition_id=row.disposition_id,
        strategy=row.strategy,
        strategy_step=row.strategy_step,
        risk_band=row.risk_band,
    )
