"""Shared set-up of the messaging tests: a small portfolio, a guard, a settable clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from compliance_guard.rules import load_preset
from compliance_guard.service import Guard, RuleBook
from compliance_guard.store_sql import SqlStore
from dialer.messaging.tables import DebtorEmail
from dialer.messaging.templates import Template, parse_templates
from dialer.store.attempts import ensure_tenant
from dialer.store.db import Store
from dialer.store.models import Address, Debt, Debtor, Phone

TEMPLATES_TOML = {
    "templates": {
        "gentle": {
            "channel": "sms",
            "en": {"body": "Hi {name}, {amount} was due on {due_date}. Pay: {payment_link}"},
            "zh-CN": {
                "body": "{name}您好，您有{amount}已于{due_date}到期，请通过{payment_link}还款。"
            },
        },
        "mail": {
            "channel": "email",
            "en": {
                "subject": "Your balance of {amount}",
                "body": "Dear {name},\n{amount} was due on {due_date}.\n{payment_link}\n",
            },
        },
    }
}


def templates() -> dict[str, Template]:
    return parse_templates(TEMPLATES_TOML, "test-templates.toml")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Seeded:
    tenant_id: int
    debtors: dict[str, int]  # external id -> row id


def seed(store: Store, tenant: str = "bank", *, count: int = 3, country: str = "CN") -> Seeded:
    """`count` debtors D-1..: a mobile each (+86 138 0013 80xx), one open debt of 1,000 + i
    CNY, 30 days past due, an address in Shanghai (or the US), and an e-mail address."""
    now = datetime(2026, 12, 1, tzinfo=UTC)
    tenant_id = ensure_tenant(store, tenant)
    ids: dict[str, int] = {}
    with store.session() as s:
        for i in range(1, count + 1):
            d = Debtor(
                tenant_id=tenant_id,
                external_id=f"D-{i}",
                full_name=f"张{i}" if country == "CN" else f"Pat Doe {i}",
                national_id=None,
                timezone=None,
                created_at=now,
            )
            s.add(d)
            s.flush()
            ids[d.external_id] = d.id
            s.add(
                Debt(
                    tenant_id=tenant_id,
                    debtor_id=d.id,
                    external_id=f"L-{i}",
                    principal=Decimal(2000),
                    balance=Decimal(1000 + i),
                    currency="CNY" if country == "CN" else "USD",
                    days_past_due=30,
                    risk_score=None,
                    created_at=now,
                )
            )
            e164 = f"+861380013{8000 + i}" if country == "CN" else f"+1212555{1000 + i}"
            s.add(
                Phone(
                    tenant_id=tenant_id,
                    debtor_id=d.id,
                    e164=e164,
                    phone_type="mobile",
                    source=None,
                    consent=True,
                    timezone=None,
                    do_not_call=False,
                    created_at=now,
                )
            )
            s.add(
                Address(
                    tenant_id=tenant_id,
                    debtor_id=d.id,
                    line1=None,
                    city="Shanghai" if country == "CN" else "New York",
                    region=None if country == "CN" else "NY",
                    postal_code="200000" if country == "CN" else "10001",
                    country=country,
                )
            )
            s.add(
                DebtorEmail(
                    tenant_id=tenant_id, debtor_id=d.id, address=f"d{i}@example.com", created_at=now
                )
            )
    return Seeded(tenant_id, ids)


def sql_guard(store: Store, ruleset: str = "cn") -> Guard:
    """The guard on the product database's own ledger, as `dialer` builds it by default."""
    rs = load_preset(ruleset)
    return Guard(SqlStore(store.engine), RuleBook({rs.name: rs}, default=rs.name))
