"""How the dialer's rows are named to the compliance guard: one mapping for every caller."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from compliance_guard.models import AttemptRequest, PhoneType
from dialer.store.attempts import DialCandidate


def person_subject(debtor_id: int) -> str:
    """The guard's person id of a debtor (flags of scope person, person ledgers)."""
    return str(debtor_id)


def debt_subject(debt_id: int) -> str:
    """The guard's debt id of a debt (flags of scope debt, debt ledgers)."""
    return str(debt_id)


def guard_request(
    tenant: str,
    campaign_id: int,
    candidate: DialCandidate,
    address: Any,
    *,
    facts_as_of: datetime | None,
) -> AttemptRequest:
    """The guard's request for dialling `candidate`: the one place the dialer's rows become the
    guard's names (person = debtor row id, debt = debt row id, campaign = campaign row id), so
    the gate and the desk's what-if checks ask about the same ledgers and flags.

    `address` is the debtor's first address (postal_code, country, region) or None;
    `facts_as_of` is when the debtor's record was read (None: not checked for age)."""
    try:
        phone_type = PhoneType(candidate.phone_type)
    except ValueError:
        phone_type = PhoneType.OTHER
    return AttemptRequest(
        tenant=tenant,
        person_id=person_subject(candidate.debtor_id),
        debt_ids=(debt_subject(candidate.debt_id),) if candidate.debt_id is not None else (),
        phone=candidate.e164,
        campaign_id=str(campaign_id),
        phone_type=phone_type,
        time_zones=(candidate.timezone,) if candidate.timezone else (),
        postal_code=address.postal_code if address else None,
        country=address.country if address else None,
        region=address.region if address else None,
        facts_as_of=facts_as_of,
    )
