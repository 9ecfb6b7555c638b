"""Importing a debt portfolio from CSV: debtors, their debts, phones and address, upserted.

File format
===========
UTF-8 text (a byte-order mark is allowed), comma-separated, double quotes around fields that
hold commas, quotes or line breaks. The first line is a header naming the columns, in any order
and any letter case. One row per debtor + debt + phone: a debtor with two debts and three phones
spans several rows that repeat `debtor_id`. Required columns (the cell may still be empty where
the table says so):

=============== ===========================================================================
debtor_id       the creditor's id of the person; required on every row
name            full name, any script (Chinese names are kept as written); required when the
                debtor is new
national_id     optional (SSN, national identity card number ...)
debt_id         the creditor's account number; empty for a row that only adds a phone
principal       amount originally owed, e.g. 1250.00; no thousands separators; >= 0
balance         amount owed now; >= 0; a debt with balance 0 is never dialled
currency        ISO 4217 code, e.g. USD, CNY
days_past_due   whole days, 0 or more
risk_score      optional number from 0 to 1000 (higher = riskier)
phone           any way of writing the number; stored in E.164 (+12125550123). Numbers
                without a country code are read in the region of `country`, else the default
                region (option --default-region, US unless told)
phone_type      mobile, home, work or other; empty: guessed from the number
phone_source    where the number came from (e.g. application, skip-trace); optional
consent         yes/no (also true/false, 1/0, y/n): prior express consent to autodialled
                calls; empty means no for a new phone
timezone        IANA zone of the debtor, e.g. America/Chicago; optional
address_line1, city, region, postal_code
                the debtor's postal address; optional
country         ISO 3166-1 alpha-2 code of the address, e.g. US, CN; optional
=============== ===========================================================================

Optional columns: `phone_timezone` (IANA zone of that phone, when its prefix misleads),
`do_not_call` (yes marks the phone do-not-call), `product` (the creditor's product line of
the debt, e.g. card, auto; assignment rules and segments select on it) and `email` (an e-mail
address of the debtor for messages; added to those stored, never replacing one).

Rules
=====
* Re-importing changes nothing: debtors and debts are matched on their external ids within the
  tenant, phones on (debtor, E.164 number); values that differ are updated, nothing is duplicated.
* An empty optional cell keeps what is stored: an import never erases a value. Likewise an
  import may set do-not-call but never clears it (an agent's do-not-call flag must survive
  the next portfolio refresh).
* When rows disagree, the later row wins.
* Each new debtor gets a case (dialer/cases), status new, in the same transaction; a re-import
  opens none. Once the rows are in, the tenant's saved assignment rules (if any) place the
  cases this import opened (dialer/cases/assignment_service.py).
* A bad row is rejected with its line number and reason; the other rows go in. Each line is
  decoded on its own, so a line with bytes that are not UTF-8 is rejected alone.
* Rows are written in batches, each in one transaction. Should the database refuse a batch, its
  rows are retried one at a time, so only the rows at fault are lost.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import logging
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from sqlalchemy import Connection, Table, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from tqdm import tqdm

from dialer.cases.assignment_service import assign_after_import
from dialer.cases.models import Actor
from dialer.cases.state import open_cases
from dialer.errors import ConfigError, DialerError, ImportRowError, StoreError
from dialer.logsafe import mask_phone
from dialer.messaging.tables import DebtorEmail
from dialer.store.attempts import ensure_tenant
from dialer.store.db import Store, error_reason
from dialer.store.models import Address, Base, Debt, Debtor, DebtStatus, Phone, PhoneType

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "debtor_id",
    "name",
    "national_id",
    "debt_id",
    "principal",
    "balance",
    "currency",
    "days_past_due",
    "risk_score",
    "phone",
    "phone_type",
    "phone_source",
    "consent",
    "timezone",
    "address_line1",
    "city",
    "region",
    "postal_code",
    "country",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("phone_timezone", "do_not_call", "product", "email")

BATCH_ROWS = 5_000
# The report keeps this many rejection reasons; the count of rejections is always exact.
MAX_ERRORS_KEPT = 1_000

_TRUE = frozenset({"1", "true", "yes", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "f"})
_AMOUNT = re.compile(r"-?\d+(?:\.\d+)?")
_MAX_AMOUNT = Decimal(10) ** 14
_CURRENCY = re.compile(r"[A-Z]{3}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_MAX_LENGTH = {
    "debtor_id": 64,
    "name": 200,
    "national_id": 64,
    "debt_id": 64,
    "phone_source": 40,
    "address_line1": 200,
    "city": 100,
    "region": 100,
    "postal_code": 20,
    "product": 32,
    "email": 254,
}

# Reads one cell of the current row: stripped, NFC-normalised, None when empty.
_Getter = Callable[[str], "str | None"]

_DEBTORS: Table = Base.metadata.tables[Debtor.__tablename__]
_DEBTS: Table = Base.metadata.tables[Debt.__tablename__]
_PHONES: Table = Base.metadata.tables[Phone.__tablename__]
_ADDRESSES: Table = Base.metadata.tables[Address.__tablename__]


# --- what one row says ------------------------------------------------------------------------


@dataclass(frozen=True)
class DebtFields:
    external_id: str
    principal: Decimal | None
    balance: Decimal | None
    currency: str | None
    days_past_due: int | None
    risk_score: float | None
    product: str | None = None


@dataclass(frozen=True)
class PhoneFields:
    e164: str
    phone_type: str | None
    source: str | None
    consent: bool | None
    timezone: str | None
    do_not_call: bool  # True sets the flag; False leaves it as stored


@dataclass(frozen=True)
class AddressFields:
    line1: str | None
    city: str | None
    region: str | None
    postal_code: str | None
    country: str | None


@dataclass(frozen=True)
class PortfolioRow:
    """One CSV row, checked and normalised; None means the cell was empty."""

    line: int
    debtor_external_id: str
    name: str | None
    national_id: str | None
    timezone: str | None
    debt: DebtFields | None
    phone: PhoneFields | None
    address: AddressFields | None
    email: str | None = None  # checked, its domain in lower case


_NO_ADDRESS = AddressFields(None, None, None, None, None)


class RowParser:
    """Turns the cells of one row into a PortfolioRow, or raises ImportRowError saying why."""

    def __init__(self, header: Sequence[str], default_region: str) -> None:
        names = [h.strip().lstrip("\ufeff").lower() for h in header]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise ImportRowError(1, f"header lacks column(s): {', '.join(missing)}")
        duplicated = sorted({n for n in names if n and names.count(n) > 1})
        if duplicated:
            raise ImportRowError(1, f"header repeats column(s): {', '.join(duplicated)}")
        self.width = len(names)
        self.index = {name: i for i, name in enumerate(names)}
        self.ignored_columns = tuple(n for n in names if n not in COLUMNS + OPTIONAL_COLUMNS)
        self.default_region = default_region
        self._zones: dict[str, bool] = {}

    def parse(self, cells: Sequence[str], line: int) -> PortfolioRow:
        if len(cells) != self.width:
            raise ImportRowError(line, f"expected {self.width} fields, found {len(cells)}")
        get = self._getter(cells, line)
        debtor_id = get("debtor_id")
        if debtor_id is None:
            raise ImportRowError(line, "debtor_id is empty")
        country = get("country")
        if country is not None:
            country = country.upper()
            if not _COUNTRY.fullmatch(country):
                raise ImportRowError(line, f"country {country!r} is not an ISO 3166 alpha-2 code")
        address = AddressFields(
            get("address_line1"), get("city"), get("region"), get("postal_code"), country
        )
        return PortfolioRow(
            line=line,
            debtor_external_id=debtor_id,
            name=get("name"),
            national_id=get("national_id"),
            timezone=self._zone(get("timezone"), "timezone", line),
            debt=self._debt(get, line),
            phone=self._phone(get, country, line),
            address=address if address != _NO_ADDRESS else None,
            email=_email(get("email"), line),
        )

    def _getter(self, cells: Sequence[str], line: int) -> _Getter:
        index = self.index

        def get(column: str) -> str | None:
            i = index.get(column)
            if i is None:
                return None
            value = cells[i].strip()
            if not value:
                return None
            value = unicodedata.normalize("NFC", value)
            limit = _MAX_LENGTH.get(column)
            if limit is not None and len(value) > limit:
                raise ImportRowError(line, f"{column} is longer than {limit} characters")
            return value

        return get

    def _debt(self, get: _Getter, line: int) -> DebtFields | None:
        debt_id = get("debt_id")
        if debt_id is None:
            for column in ("principal", "balance", "currency", "days_past_due", "risk_score"):
                if get(column) is not None:
                    raise ImportRowError(line, f"{column} is given but debt_id is empty")
            return None
        currency = get("currency")
        if currency is not None:
            currency = currency.upper()
            if not _CURRENCY.fullmatch(currency):
                raise ImportRowError(line, f"currency {currency!r} is not an ISO 4217 code")
        days = get("days_past_due")
        days_past_due: int | None = None
        if days is not None:
            try:
                days_past_due = int(days)
            except ValueError:
                raise ImportRowError(
                    line, f"days_past_due {days!r} is not a whole number"
                ) from None
            if days_past_due < 0:
                raise ImportRowError(line, f"days_past_due {days_past_due} is negative")
        risk = get("risk_score")
        risk_score: float | None = None
        if risk is not None:
            try:
                risk_score = float(risk)
            except ValueError:
                raise ImportRowError(line, f"risk_score {risk!r} is not a number") from None
            if not 0 <= risk_score <= 1000:
                raise ImportRowError(line, f"risk_score {risk} is outside 0..1000")
        return DebtFields(
            external_id=debt_id,
            principal=_amount(get("principal"), "principal", line),
            balance=_amount(get("balance"), "balance", line),
            currency=currency,
            days_past_due=days_past_due,
            risk_score=risk_score,
            product=get("product"),
        )

    def _phone(self, get: _Getter, country: str | None, line: int) -> PhoneFields | None:
        raw = get("phone")
        if raw is None:
            for column in ("phone_type", "phone_source", "consent", "phone_timezone"):
                if get(column) is not None:
                    raise ImportRowError(line, f"{column} is given but phone is empty")
            return None
        region = country if country in phonenumbers.SUPPORTED_REGIONS else self.default_region
        try:
            number = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException as exc:
            raise ImportRowError(
                line, f"phone {mask_phone(raw)} cannot be read as a number: {exc}"
            ) from None
        # Checking against the expected region first is several times cheaper than asking which
        # of the country code's regions (25 for +1) the number belongs to; most numbers pass it.
        if not (
            phonenumbers.is_valid_number_for_region(number, region)
            or phonenumbers.is_valid_number(number)
        ):
            raise ImportRowError(line, f"phone {mask_phone(raw)} is not a valid number ({region})")
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        kind = get("phone_type")
        if kind is not None:
            kind = kind.lower()
            if kind not in PhoneType.__members__.values():
                known = ", ".join(t.value for t in PhoneType)
                raise ImportRowError(line, f"phone_type {kind!r} is not one of {known}")
        return PhoneFields(
            e164=e164,
            phone_type=kind,
            source=get("phone_source"),
            consent=_yes_no(get("consent"), "consent", line),
            timezone=self._zone(get("phone_timezone"), "phone_timezone", line),
            do_not_call=_yes_no(get("do_not_call"), "do_not_call", line) is True,
        )

    def _zone(self, name: str | None, column: str, line: int) -> str | None:
        if name is None:
            return None
        known = self._zones.get(name)
        if known is None:
            try:
                ZoneInfo(name)
                known = True
            except (ZoneInfoNotFoundError, ValueError):
                known = False
            self._zones[name] = known
        if not known:
            raise ImportRowError(line, f"{column} {name!r} is not an IANA time zone")
        return name


def _amount(text: str | None, column: str, line: int) -> Decimal | None:
    if text is None:
        return None
    if not _AMOUNT.fullmatch(text):
        raise ImportRowError(line, f"{column} {text!r} is not an amount (write e.g. 1250.00)")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern already excludes it
        raise ImportRowError(line, f"{column} {text!r} is not an amount") from None
    if value < 0:
        raise ImportRowError(line, f"{column} {text} is negative")
    if value >= _MAX_AMOUNT:
        raise ImportRowError(line, f"{column} {text} is too large")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        raise ImportRowError(line, f"{column} {text} has more than 4 decimal places")
    return value


# A working subset of RFC 5321 mailbox syntax: dot-atom local part, a domain of LDH labels
# with a top-level label of letters. Quoted local parts and IP literals are refused.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)


def _email(text: str | None, line: int) -> str | None:
    if text is None:
        return None
    found = _EMAIL.fullmatch(text)
    if found is None or len(text.partition("@")[0]) > 64:
        # Like a phone, the address is personal data: only its first letter and domain shown.
        local, at, domain = text.partition("@")
        shown = f"{local[:1]}***{at}{domain}"
        raise ImportRowError(line, f"email {shown!r} is not an e-mail address (e.g. li@example.cn)")
    return text[: found.start(1)] + found.group(1).lower()


def _yes_no(text: str | None, column: str, line: int) -> bool | None:
    if text is None:
        return None
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImportRowError(line, f"{column} {text!r} is not yes or no")


def _guess_phone_type(e164: str) -> str:
    kind = phonenumbers.number_type(phonenumbers.parse(e164))
    if kind == phonenumbers.PhoneNumberType.MOBILE:
        return PhoneType.MOBILE.value
    if kind == phonenumbers.PhoneNumberType.FIXED_LINE:
        return PhoneType.HOME.value
    return PhoneType.OTHER.value


# --- reading lines ----------------------------------------------------------------------------


class _Lines:
    """Decodes a binary file line by line, so one undecodable line is rejected on its own."""

    def __init__(self, raw_lines: Iterable[bytes]) -> None:
        self._raw = raw_lines
        self.undecodable: list[ImportRowError] = []
        self.consumed: list[int] = []  # line numbers handed to the CSV reader since last take
        self.bytes_read = 0

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self._raw, start=1):
            self.bytes_read += len(raw)
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.undecodable.append(
                    ImportRowError(number, f"not UTF-8 text (byte {exc.start + 1} of the line)")
                )
                continue
            self.consumed.append(number)
            yield text

    def take(self) -> list[int]:
        taken, self.consumed = self.consumed, []
        return taken


# --- the import -------------------------------------------------------------------------------


class RowStatus(enum.Enum):
    IMPORTED = "imported"  # created a debtor, debt or phone
    UPDATED = "updated"  # changed stored values
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ImportReport:
    path: str
    tenant: str
    rows_read: int
    imported: int
    updated: int
    unchanged: int
    rejected: int
    errors: tuple[ImportRowError, ...]  # the first MAX_ERRORS_KEPT, in line order
    debtors_created: int
    debts_created: int
    phones_created: int
    ignored_columns: tuple[str, ...] = ()
    # Cases the tenant's assignment rules placed after the import; None: the tenant has none.
    cases_assigned: int | None = None

    def to_dict(self, max_errors: int | None = None) -> dict[str, Any]:
        errors = self.errors if max_errors is None else self.errors[:max_errors]
        return {
            "path": self.path,
            "tenant": self.tenant,
            "rows_read": self.rows_read,
            "imported": self.imported,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "debtors_created": self.debtors_created,
            "debts_created": self.debts_created,
            "phones_created": self.phones_created,
            "ignored_columns": list(self.ignored_columns),
            "cases_assigned": self.cases_assigned,
            "errors": [{"line": e.line, "reason": e.reason} for e in errors],
        }


@dataclass(frozen=True)
class _DebtorState:
    id: int | None  # None until inserted
    full_name: str
    national_id: str | None
    timezone: str | None


@dataclass(frozen=True)
class _DebtState:
    id: int | None
    debtor_external_id: str
    principal: Decimal
    balance: Decimal
    currency: str
    days_past_due: int
    risk_score: float | None
    product: str | None = None
    # The day days_past_due was true on: the file's day; the nightly ageing moves both on.
    dpd_as_of: date | None = None


@dataclass(frozen=True)
class _PhoneState:
    id: int | None
    phone_type: str
    source: str | None
    consent: bool
    timezone: str | None
    do_not_call: bool


@dataclass(frozen=True)
class _AddressState:
    id: int | None
    line1: str | None
    city: str | None
    region: str | None
    postal_code: str | None
    country: str | None


_K = TypeVar("_K")
_T = TypeVar("_T")
_S = TypeVar("_S")
_PhoneKey = tuple[str, str]  # (debtor external id, E.164)


@dataclass
class _Portfolio:
    """What the tenant already has, keyed the way the file refers to it."""

    debtors: dict[str, _DebtorState]
    debts: dict[str, _DebtState]
    phones: dict[_PhoneKey, _PhoneState]
    addresses: dict[str, _AddressState]


@dataclass
class _Batch:
    """Changes planned for one batch: new or changed states, merged once the batch commits."""

    debtors: dict[str, _DebtorState] = dataclasses.field(default_factory=dict)
    debts: dict[str, _DebtState] = dataclasses.field(default_factory=dict)
    phones: dict[_PhoneKey, _PhoneState] = dataclasses.field(default_factory=dict)
    addresses: dict[str, _AddressState] = dataclasses.field(default_factory=dict)
    emails: set[tuple[str, str]] = dataclasses.field(default_factory=set)  # (debtor, address)
    statuses: list[RowStatus] = dataclasses.field(default_factory=list)
    rejected: list[ImportRowError] = dataclasses.field(default_factory=list)


def _current(batch: dict[_K, _S], stored: dict[_K, _S], key: _K) -> _S | None:
    found = batch.get(key)
    return found if found is not None else stored.get(key)


def _keep(new: _T | None, old: _T) -> _T:
    return old if new is None else new


class _Importer:
    def __init__(self, store: Store, tenant_id: int, now: datetime) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.now = now
        self.today = now.astimezone(UTC).date()
        self.portfolio = self._load()
        self.created = {"debtors": 0, "debts": 0, "phones": 0}

    def _load(self) -> _Portfolio:
        tenant = self.tenant_id
        with self.store.begin() as conn:
            debtors = conn.execute(
                select(
                    _DEBTORS.c.id,
                    _DEBTORS.c.external_id,
                    _DEBTORS.c.full_name,
                    _DEBTORS.c.national_id,
                    _DEBTORS.c.timezone,
                ).where(_DEBTORS.c.tenant_id == tenant)
            ).all()
            debtor_ext = {row.id: row.external_id for row in debtors}
            debts = conn.execute(
                select(
                    _DEBTS.c.id,
                    _DEBTS.c.external_id,
                    _DEBTS.c.debtor_id,
                    _DEBTS.c.principal,
                    _DEBTS.c.balance,
                    _DEBTS.c.currency,
                    _DEBTS.c.days_past_due,
                    _DEBTS.c.risk_score,
                    _DEBTS.c.product,
                    _DEBTS.c.dpd_as_of,
                ).where(_DEBTS.c.tenant_id == tenant)
            ).all()
            phones = conn.execute(
                select(
                    _PHONES.c.id,
                    _PHONES.c.debtor_id,
                    _PHONES.c.e164,
                    _PHONES.c.phone_type,
                    _PHONES.c.source,
                    _PHONES.c.consent,
                    _PHONES.c.timezone,
                    _PHONES.c.do_not_call,
                ).where(_PHONES.c.tenant_id == tenant)
            ).all()
            addresses = conn.execute(
                select(
                    _ADDRESSES.c.id,
                    _ADDRESSES.c.debtor_id,
                    _ADDRESSES.c.line1,
                    _ADDRESSES.c.city,
                    _ADDRESSES.c.region,
                    _ADDRESSES.c.postal_code,
                    _ADDRESSES.c.country,
                )
                .where(_ADDRESSES.c.tenant_id == tenant)
                .order_by(_ADDRESSES.c.id)
            ).all()
        return _Portfolio(
            debtors={
                r.external_id: _DebtorState(r.id, r.full_name, r.national_id, r.timezone)
                for r in debtors
            },
            debts={
                r.external_id: _DebtState(
                    r.id,
                    debtor_ext[r.debtor_id],
                    Decimal(r.principal),
                    Decimal(r.balance),
                    r.currency,
                    r.days_past_due,
                    r.risk_score,
                    r.product,
                    r.dpd_as_of,
                )
                for r in debts
            },
            phones={
                (debtor_ext[r.debtor_id], r.e164): _PhoneState(
                    r.id, r.phone_type, r.source, bool(r.consent), r.timezone, bool(r.do_not_call)
                )
                for r in phones
            },
            # The import keeps one address per debtor; should there be more, the first is its.
            addresses={
                debtor_ext[r.debtor_id]: _AddressState(
                    r.id, r.line1, r.city, r.region, r.postal_code, r.country
                )
                for r in reversed(addresses)
            },
        )

    # planning: pure bookkeeping against the in-memory portfolio, no database
    def plan(self, rows: Sequence[PortfolioRow]) -> _Batch:
        batch = _Batch()
        for row in rows:
            try:
                batch.statuses.append(self._plan_row(row, batch))
            except ImportRowError as exc:
                batch.rejected.append(exc)
        return batch

    def _plan_row(self, row: PortfolioRow, batch: _Batch) -> RowStatus:
        known = self.portfolio
        ext = row.debtor_external_id
        created = changed = False

        old_debtor = _current(batch.debtors, known.debtors, ext)
        if old_debtor is None:
            if row.name is None:
                raise ImportRowError(row.line, f"name is required for new debtor {ext!r}")
            debtor = _DebtorState(None, row.name, row.national_id, row.timezone)
            created = True
        else:
            debtor = _DebtorState(
                old_debtor.id,
                _keep(row.name, old_debtor.full_name),
                _keep(row.national_id, old_debtor.national_id),
                _keep(row.timezone, old_debtor.timezone),
            )
            changed = debtor != old_debtor

        debt: _DebtState | None = None
        if row.debt is not None:
            d = row.debt
            old_debt = _current(batch.debts, known.debts, d.external_id)
            if old_debt is None:
                absent = [
                    name
                    for name, value in (
                        ("principal", d.principal),
                        ("balance", d.balance),
                        ("currency", d.currency),
                        ("days_past_due", d.days_past_due),
                    )
                    if value is None
                ]
                if absent:
                    raise ImportRowError(
                        row.line, f"{', '.join(absent)} required for new debt {d.external_id!r}"
                    )
                assert d.principal is not None and d.balance is not None
                assert d.currency is not None and d.days_past_due is not None
                debt = _DebtState(
                    None,
                    ext,
                    d.principal,
                    d.balance,
                    d.currency,
                    d.days_past_due,
                    d.risk_score,
                    d.product,
                    self.today,
                )
                created = True
            else:
                if old_debt.debtor_external_id != ext:
                    raise ImportRowError(
                        row.line,
                        f"debt {d.external_id!r} belongs to debtor {old_debt.debtor_external_id!r}",
                    )
                debt = _DebtState(
                    old_debt.id,
                    ext,
                    _keep(d.principal, old_debt.principal),
                    _keep(d.balance, old_debt.balance),
                    _keep(d.currency, old_debt.currency),
                    _keep(d.days_past_due, old_debt.days_past_due),
                    _keep(d.risk_score, old_debt.risk_score),
                    _keep(d.product, old_debt.product),
                    # A file that states days past due states them as of its own day.
                    self.today if d.days_past_due is not None else old_debt.dpd_as_of,
                )
                if debt == old_debt:
                    debt = None
                else:
                    changed = True

        phone: _PhoneState | None = None
        if row.phone is not None:
            p = row.phone
            old_phone = _current(batch.phones, known.phones, (ext, p.e164))
            if old_phone is None:
                phone = _PhoneState(
                    None,
                    p.phone_type or _guess_phone_type(p.e164),
                    p.source,
                    bool(p.consent),
                    p.timezone,
                    p.do_not_call,
                )
                created = True
            else:
                phone = _PhoneState(
                    old_phone.id,
                    _keep(p.phone_type, old_phone.phone_type),
                    _keep(p.source, old_phone.source),
                    _keep(p.consent, old_phone.consent),
                    _keep(p.timezone, old_phone.timezone),
                    old_phone.do_not_call or p.do_not_call,
                )
                if phone == old_phone:
                    phone = None
                else:
                    changed = True

        address: _AddressState | None = None
        if row.address is not None:
            a = row.address
            old_address = _current(batch.addresses, known.addresses, ext)
            if old_address is None:
                address = _AddressState(None, a.line1, a.city, a.region, a.postal_code, a.country)
                changed = True
            else:
                address = _AddressState(
                    old_address.id,
                    _keep(a.line1, old_address.line1),
                    _keep(a.city, old_address.city),
                    _keep(a.region, old_address.region),
                    _keep(a.postal_code, old_address.postal_code),
                    _keep(a.country, old_address.country),
                )
                if address == old_address:
                    address = None
                else:
                    changed = True

        # Only now, with every check passed, does the row touch the batch.
        if old_debtor is None or debtor != old_debtor:
            batch.debtors[ext] = debtor
        if debt is not None and row.debt is not None:
            batch.debts[row.debt.external_id] = debt
        if phone is not None and row.phone is not None:
            batch.phones[(ext, row.phone.e164)] = phone
        if address is not None:
            batch.addresses[ext] = address
        if row.email is not None:
            batch.emails.add((ext, row.email))
        if created:
            return RowStatus.IMPORTED
        return RowStatus.UPDATED if changed else RowStatus.UNCHANGED

    # writing: one transaction per batch; the portfolio learns the ids only after commit
    def write(self, batch: _Batch) -> None:
        known = self.portfolio
        tenant = self.tenant_id
        now = self.now
        with self.store.begin() as conn:
            debtor_ids = self._upsert(
                conn,
                _DEBTORS,
                batch.debtors,
                lambda ext, s: {
                    "external_id": ext,
                    "full_name": s.full_name,
                    "national_id": s.national_id,
                    "timezone": s.timezone,
                },
                {"tenant_id": tenant, "created_at": now},
            )
            open_cases(conn, tenant, debtor_ids.values(), Actor.system("import"), now)

            def debtor_id(ext: str) -> int:
                found = debtor_ids.get(ext)
                if found is not None:
                    return found
                state = known.debtors[ext]
                assert state.id is not None
                return state.id

            debt_ids = self._upsert(
                conn,
                _DEBTS,
                batch.debts,
                lambda ext, s: {
                    "external_id": ext,
                    "debtor_id": debtor_id(s.debtor_external_id),
                    "principal": s.principal,
                    "balance": s.balance,
                    "currency": s.currency,
                    "days_past_due": s.days_past_due,
                    "risk_score": s.risk_score,
                    "product": s.product,
                    "dpd_as_of": s.dpd_as_of,
                },
                {"tenant_id": tenant, "created_at": now, "status": DebtStatus.OPEN.value},
            )
            phone_ids = self._upsert(
                conn,
                _PHONES,
                batch.phones,
                lambda key, s: {
                    "debtor_id": debtor_id(key[0]),
                    "e164": key[1],
                    "phone_type": s.phone_type,
                    "source": s.source,
                    "consent": s.consent,
                    "timezone": s.timezone,
                    "do_not_call": s.do_not_call,
                },
                {"tenant_id": tenant, "created_at": now},
            )
            address_ids = self._upsert(
                conn,
                _ADDRESSES,
                batch.addresses,
                lambda ext, s: {
                    "debtor_id": debtor_id(ext),
                    "line1": s.line1,
                    "city": s.city,
                    "region": s.region,
                    "postal_code": s.postal_code,
                    "country": s.country,
                },
                {"tenant_id": tenant},
            )
            if batch.emails:
                # An address already stored for the debtor is left as it is.
                add = _insert_for(conn, DebtorEmail.__table__).values(
                    [
                        {
                            "tenant_id": tenant,
                            "debtor_id": debtor_id(ext),
                            "address": address,
                            "created_at": now,
                        }
                        for ext, address in sorted(batch.emails)
                    ]
                )
                conn.execute(add.on_conflict_do_nothing(index_elements=["debtor_id", "address"]))
        self.created["debtors"] += sum(1 for s in batch.debtors.values() if s.id is None)
        self.created["debts"] += sum(1 for s in batch.debts.values() if s.id is None)
        self.created["phones"] += sum(1 for s in batch.phones.values() if s.id is None)
        _merge(known.debtors, batch.debtors, debtor_ids)
        _merge(known.debts, batch.debts, debt_ids)
        _merge(known.phones, batch.phones, phone_ids)
        _merge(known.addresses, batch.addresses, address_ids)

    @staticmethod
    def _upsert(
        conn: Connection,
        table: Table,
        states: dict[_K, Any],
        values: Any,
        on_insert: dict[str, Any],
    ) -> dict[_K, int]:
        """Insert the new states (returning their ids by key) and update the changed ones."""
        new_keys = [key for key, state in states.items() if state.id is None]
        ids: dict[_K, int] = {}
        if new_keys:
            rows = [{**on_insert, **values(key, states[key])} for key in new_keys]
            new_ids: Sequence[int]
            dialect = conn.dialect.name
            if dialect == "postgresql":
                # Take the ids from the sequence first, then send one plain INSERT that psycopg
                # pipelines; INSERT .. RETURNING of thousands of rows is several times slower.
                new_ids = (
                    conn.execute(_PG_NEXT_IDS, {"table": table.name, "n": len(rows)})
                    .scalars()
                    .all()
                )
                for row, new_id in zip(rows, new_ids, strict=True):
                    row["id"] = new_id
                conn.execute(insert(table), rows)
            elif dialect == "sqlite":
                # SQLite cannot promise RETURNING order for a multi-row INSERT, so SQLAlchemy
                # would send one statement per row. A plain executemany inside our write
                # transaction numbers the rows max(id)+1, +2, ... in order (no other writer can
                # interleave while we hold the lock), so the ids are the last len(rows) ones.
                conn.execute(insert(table), rows)
                last = int(conn.execute(select(func.max(table.c.id))).scalar_one())
                new_ids = range(last - len(rows) + 1, last + 1)
            else:
                new_ids = (
                    conn.execute(
                        insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
                    )
                    .scalars()
                    .all()
                )
            ids = {key: int(new_id) for key, new_id in zip(new_keys, new_ids, strict=True)}
        changed = [{"_id": state.id, **values(key, state)} for key, state in states.items()]
        changed = [row for row in changed if row["_id"] is not None]
        if changed:
            conn.execute(update(table).where(table.c.id == bindparam("_id")), changed)
        return ids


def _insert_for(conn: Connection, table: Any) -> Any:
    """INSERT with ON CONFLICT, in the connection's dialect (the store runs on these two)."""
    if conn.dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


_PG_NEXT_IDS = text(
    "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
)


def _merge(known: dict[_K, Any], batch: dict[_K, Any], new_ids: dict[_K, int]) -> None:
    for key, state in batch.items():
        if state.id is None:
            state = dataclasses.replace(state, id=new_ids[key])
        known[key] = state


# PostgreSQL plans the hopper's query from table statistics; after a large load they are stale
# until autovacuum notices, and a stale plan ranks the whole portfolio instead of stopping early.
_ANALYZE_AFTER_ROWS = 1_000


def _refresh_planner_statistics(store: Store) -> None:
    if store.dialect != "postgresql":
        return
    tables = ", ".join(t.name for t in (_DEBTORS, _DEBTS, _PHONES, _ADDRESSES))
    try:
        with store.begin() as conn:
            conn.execute(text(f"ANALYZE {tables}"))
    except SQLAlchemyError as exc:
        # Only a planning hint: the data is in; autovacuum will catch up.
        log.warning("x ANALYZE after import failed: %s", error_reason(exc))


def import_csv(
    store: Store,
    path: str | Path,
    tenant: str,
    default_region: str = "US",
    progress: bool = False,
    *,
    now: datetime | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ImportReport:
    """Import a portfolio CSV (format in this module's docstring) into the tenant's records.

    Raises ImportRowError for a file that cannot be read at all (line 0) or whose header lacks
    columns (line 1); every other problem rejects just its row and is listed in the report.
    """
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"default region {default_region!r} is not a known ISO 3166 region")
    source = Path(path)
    try:
        size = source.stat().st_size
        handle = source.open("rb")
    except OSError as exc:
        raise ImportRowError(0, f"{source}: cannot open: {exc.strerror or exc}") from exc
    importer: _Importer | None = None  # made once the header is known to be good
    counts = {status: 0 for status in RowStatus}
    rejected: list[ImportRowError] = []
    rejected_count = 0
    rows_read = 0

    def reject(error: ImportRowError) -> None:
        nonlocal rejected_count
        rejected_count += 1
        if len(rejected) < MAX_ERRORS_KEPT:
            rejected.append(error)

    def flush(rows: list[PortfolioRow]) -> None:
        assert importer is not None
        batch = importer.plan(rows)
        try:
            importer.write(batch)
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreError(f"import of {source} stopped: {error_reason(exc)}") from exc
            if len(rows) == 1:
                reason = f"database refused the row: {error_reason(exc)}"
                reject(ImportRowError(rows[0].line, reason))
                return
            # Find the rows at fault: one transaction each, so the rest still go in.
            for row in rows:
                flush([row])
            return
        except SQLAlchemyError as exc:
            raise StoreError(f"import of {source} stopped: {error_reason(exc)}") from exc
        for status in batch.statuses:
            counts[status] += 1
        for error in batch.rejected:
            reject(error)

    with (
        handle,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=source.name,
            disable=not progress,
            file=sys.stderr,
        ) as bar,
    ):
        lines = _Lines(handle)
        reader = csv.reader(lines)
        parser: RowParser | None = None
        pending: list[PortfolioRow] = []
        reported_bytes = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                taken = lines.take()
                rows_read += 1
                reject(ImportRowError(taken[0] if taken else 0, f"malformed CSV: {exc}"))
                continue
            finally:
                for error in lines.undecodable:
                    rows_read += 1
                    reject(error)
                lines.undecodable.clear()
            taken = lines.take()
            line = taken[0] if taken else 0
            if not cells or all(not c.strip() for c in cells):
                continue
            if parser is None:
                try:
                    parser = RowParser(cells, region)
                except ImportRowError as exc:
                    raise ImportRowError(line, f"{source}: {exc.reason}") from None
                importer = _Importer(
                    store, ensure_tenant(store, tenant, now=now), now or datetime.now(UTC)
                )
                continue
            rows_read += 1
            try:
                pending.append(parser.parse(cells, line))
            except ImportRowError as exc:
                reject(exc)
            if len(pending) >= batch_rows:
                flush(pending)
                pending = []
            if lines.bytes_read - reported_bytes >= 1 << 16:
                bar.update(lines.bytes_read - reported_bytes)
                reported_bytes = lines.bytes_read
        if pending:
            flush(pending)
        bar.update(lines.bytes_read - reported_bytes)
    if parser is None or importer is None:
        raise ImportRowError(1, f"{source}: no header line (the file is empty)")
    log.info(
        "= imported %s for tenant %s: %d rows, %d imported, %d updated, %d unchanged, %d rejected",
        source.name,
        tenant,
        rows_read,
        counts[RowStatus.IMPORTED],
        counts[RowStatus.UPDATED],
        counts[RowStatus.UNCHANGED],
        rejected_count,
    )
    if sum(importer.created.values()) >= _ANALYZE_AFTER_ROWS:
        _refresh_planner_statistics(store)
    assigned = _assign_new_cases(store, importer) if importer.created["debtors"] else None
    return ImportReport(
        path=str(source),
        tenant=tenant,
        rows_read=rows_read,
        imported=counts[RowStatus.IMPORTED],
        updated=counts[RowStatus.UPDATED],
        unchanged=counts[RowStatus.UNCHANGED],
        rejected=rejected_count,
        errors=tuple(sorted(rejected, key=lambda e: e.line)),
        debtors_created=importer.created["debtors"],
        debts_created=importer.created["debts"],
        phones_created=importer.created["phones"],
        ignored_columns=parser.ignored_columns,
        cases_assigned=assigned,
    )


def _assign_new_cases(store: Store, importer: _Importer) -> int | None:
    """The tenant's assignment rules applied to the cases this import opened. The rows are in
    whatever happens here: a failure is logged, and the nightly run places the cases."""
    try:
        return assign_after_import(store, importer.tenant_id, importer.now)
    except (DialerError, SQLAlchemyError) as exc:
        log.warning("x assignment after the import failed: %s", exc)
        return None
