"""The case an agent of a preview campaign looks at before pressing dial: the debtor, the number
and the accounts, with the earlier contacts (the same reads as the screen pop, without a call)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from dialer.desk.pop import _DEBTS, _HISTORY, _history, money
from dialer.errors import StoreError
from dialer.store.attempts import DialCandidate
from dialer.store.db import Store, error_reason
from dialer.store.models import Debtor


def build_preview(store: Store, tenant_id: int, candidate: DialCandidate) -> dict[str, Any]:
    """The preview's JSON: {debtor, phone, accounts, history} (attempt_id null: no call yet)."""
    params = {"tenant_id": tenant_id, "debtor_id": candidate.debtor_id}
    try:
        with store.begin() as conn:
            debtor = conn.execute(
                select(Debtor.full_name, Debtor.external_id).where(
                    Debtor.id == candidate.debtor_id, Debtor.tenant_id == tenant_id
                )
            ).one()
            debts = conn.execute(_DEBTS, params).all()
            rows = conn.execute(_HISTORY, params).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"preview of debtor {candidate.debtor_id}: {error_reason(exc)}") from exc
    return {
        "attempt_id": None,
        "debtor": {
            "id": candidate.debtor_id,
            "name": debtor.full_name,
            "external_id": debtor.external_id,
        },
        "phone": candidate.e164,
        "accounts": [
            {
                "debt_id": int(d.id),
                "reference": d.external_id,
                "balance": money(d.balance),
                "currency": d.currency,
                "days_past_due": d.days_past_due,
                "status": d.status,
            }
            for d in debts
        ],
        "history": [h.to_json() for h in _history(rows, 0)],
    }
