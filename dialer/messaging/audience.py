"""Who a batch goes to, and the facts about each debtor that templates and the guard need."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, ColumnElement, Connection, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute

from dialer.messaging.errors import AudienceError
from dialer.messaging.models import Channel
from dialer.messaging.tables import DebtorEmail
from dialer.store.models import Address, Debt, Debtor, DebtStatus, Phone

# Chunks of ids per IN (...) query: well under every driver's parameter limit.
_IN_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class OpenDebt:
    id: int
    external_id: str
    balance: Decimal
    currency: str
    days_past_due: int


@dataclass(frozen=True, slots=True)
class DebtorFacts:
    """One debtor as messaging sees it, read in bulk."""

    debtor_id: int
    external_id: str
    name: str
    timezone: str | None
    debts: tuple[OpenDebt, ...]
    # (e164, phone_type, timezone) of numbers that may take an SMS, mobiles first
    mobiles: tuple[tuple[str, str, str | None], ...]
    email: str | None
    postal_code: str | None
    country: str | None
    region: str | None

    def amount_due(self) -> tuple[Decimal, str]:
        """What is owed in the currency of the largest open debt (others are not summed in)."""
        main = max(self.debts, key=lambda d: d.balance)
        return sum(
            (d.balance for d in self.debts if d.currency == main.currency), Decimal()
        ), main.currency

    def due_date(self, now: datetime) -> date:
        """The day the oldest open debt fell due, in the debtor's own calendar."""
        zone = ZoneInfo("UTC")
        if self.timezone:
            with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
                zone = ZoneInfo(self.timezone)
        today = now.astimezone(zone).date()
        return today - timedelta(days=max(d.days_past_due for d in self.debts))

    def payment_link(self, pattern: str) -> str:
        return pattern.format(debtor=quote(self.external_id, safe=""))

    def language(self) -> str:
        return "zh-CN" if self.country == "CN" else "en"


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), _IN_CHUNK):
        yield ids[i : i + _IN_CHUNK]


def among(
    conn: Connection, column: InstrumentedAttribute[int], ids: Sequence[int]
) -> ColumnElement[bool]:
    """`column IN ids`; on PostgreSQL one array parameter, whose query text is the same for
    every chunk (a thousand placeholders made the driver parse a new text for each query)."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(BigInteger)))
    return column.in_(ids)


def load_facts(
    conn: Connection,
    tenant_id: int,
    debtor_ids: Sequence[int],
    channels: frozenset[Channel] = frozenset({Channel.SMS, Channel.EMAIL}),
) -> dict[int, DebtorFacts]:
    """Facts of these debtors of the tenant (ids of another tenant are left out); numbers are
    read only for SMS and addresses only for e-mail."""
    out: dict[int, DebtorFacts] = {}
    for ids in _chunks(sorted(set(debtor_ids))):
        # By id alone, the tenant checked here: with the tenant in the query, SQLite (which
        # keeps no statistics) read every debtor of the tenant through its index, each chunk.
        debtors = [
            d
            for d in conn.execute(
                select(
                    Debtor.id,
                    Debtor.tenant_id,
                    Debtor.external_id,
                    Debtor.full_name,
                    Debtor.timezone,
                ).where(among(conn, Debtor.id, ids))
            )
            if d.tenant_id == tenant_id
        ]
        debts: dict[int, list[OpenDebt]] = {}
        for debtor_id, debt_id, ext, balance, currency, dpd in conn.execute(
            select(
                Debt.debtor_id,
                Debt.id,
                Debt.external_id,
                Debt.balance,
                Debt.currency,
                Debt.days_past_due,
            )
            .where(
                among(conn, Debt.debtor_id, ids),
                Debt.status == DebtStatus.OPEN.value,
                Debt.balance > 0,
            )
            .order_by(Debt.id)
        ):
            debts.setdefault(debtor_id, []).append(
                OpenDebt(debt_id, ext, Decimal(balance), currency, dpd)
            )
        mobiles: dict[int, list[tuple[str, str, str | None]]] = {}
        # An agent's do-not-call mark on a number is honoured for texts too: the debtor asked
        # not to be contacted there, and the mark says nothing narrower.
        phones = (
            conn.execute(
                select(Phone.debtor_id, Phone.e164, Phone.phone_type, Phone.timezone)
                .where(among(conn, Phone.debtor_id, ids), Phone.do_not_call.is_(False))
                .order_by(Phone.id)
            ).all()
            if Channel.SMS in channels
            else []
        )
        for debtor_id, e164, phone_type, zone in phones:
            if phone_type in ("mobile", "other"):
                mobiles.setdefault(debtor_id, []).append((e164, phone_type, zone))
        for numbers in mobiles.values():
            numbers.sort(key=lambda n: n[1] != "mobile")
        addresses: dict[int, tuple[str | None, str | None, str | None]] = {}
        for a in conn.execute(
            select(Address.debtor_id, Address.postal_code, Address.country, Address.region)
            .where(among(conn, Address.debtor_id, ids))
            .order_by(Address.id)
        ):
            addresses.setdefault(a.debtor_id, (a.postal_code, a.country, a.region))
        emails: dict[int, str] = {}
        if Channel.EMAIL in channels:
            for debtor_id, address in conn.execute(
                select(DebtorEmail.debtor_id, DebtorEmail.address)
                .where(among(conn, DebtorEmail.debtor_id, ids))
                .order_by(DebtorEmail.id)
            ):
                emails.setdefault(debtor_id, address)
        for d in debtors:
            postal, country, region = addresses.get(d.id, (None, None, None))
            out[d.id] = DebtorFacts(
                d.id,
                d.external_id,
                d.full_name,
                d.timezone,
                tuple(debts.get(d.id, ())),
                tuple(mobiles.get(d.id, ())),
                emails.get(d.id),
                postal,
                country,
                region,
            )
    return out


def debtor_ids_by_external(
    conn: Connection, tenant_id: int, external_ids: Sequence[str]
) -> list[int]:
    """Row ids of the named debtors, in the order given; AudienceError names the unknown ones."""
    found: dict[str, int] = {}
    wanted = list(dict.fromkeys(external_ids))
    for i in range(0, len(wanted), _IN_CHUNK):
        part = wanted[i : i + _IN_CHUNK]
        for r in conn.execute(
            select(Debtor.external_id, Debtor.id).where(
                Debtor.tenant_id == tenant_id, Debtor.external_id.in_(part)
            )
        ):
            found[r.external_id] = r.id
    missing = [e for e in wanted if e not in found]
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise AudienceError(f"unknown debtor ids: {shown}")
    return [found[e] for e in wanted]


def all_debtors_with_open_debts(conn: Connection, tenant_id: int) -> list[int]:
    return list(
        conn.execute(
            select(Debt.debtor_id)
            .where(
                Debt.tenant_id == tenant_id, Debt.status == DebtStatus.OPEN.value, Debt.balance > 0
            )
            .distinct()
            .order_by(Debt.debtor_id)
        ).scalars()
    )


def read_audience_csv(path: Path) -> list[str]:
    """Debtor ids (the creditor's, column `debtor_id`) from a CSV: a list made for this send,
    or the very portfolio file that was imported. Repeated ids count once."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AudienceError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise AudienceError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower(): c for c in reader.fieldnames or []}
    if "debtor_id" not in columns:
        raise AudienceError(
            f"{path}: no debtor_id column (columns: {', '.join(columns) or 'none'})"
        )
    ids: list[str] = []
    for line, row in enumerate(reader, start=2):
        value = (row.get(columns["debtor_id"]) or "").strip()
        if not value:
            raise AudienceError(f"{path}: line {line}: empty debtor_id")
        ids.append(value)
    return list(dict.fromkeys(ids))
