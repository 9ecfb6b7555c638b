"""Payments: posted one by one or read from the creditor's payments CSV, idempotent by payment
id; each lowers its debt's balance, may keep the open promise, and a case paid in full is paid.

Payments file
=============
UTF-8 CSV with a header naming the columns (any order, any letter case):

=========== =====================================================================
payment_id  the creditor's id of the payment; required, unique within the tenant
debt_id     the creditor's account number the money was paid on; required
amount      e.g. 125.50; above 0; no thousands separators
paid_on     the date the money was paid, YYYY-MM-DD
currency    optional; when given it must be the debt's
method      optional (card, transfer, cash ...)
reference   optional (the bank's reference)
=========== =====================================================================

A bad row is reported with its line number and reason and the other rows go in. A payment id
already recorded with the same debt, amount and date is counted as a duplicate and changes
nothing; with other facts it is rejected (the first record stands).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dialer.cases.errors import CaseError, CaseRefused, PaymentConflict, check_text
from dialer.cases.models import TRANSITIONS, Actor, CaseStatus, PaymentIn, PaymentResult
from dialer.cases.promises import check_amount, keep_if_paid
from dialer.cases.state import (
    CaseRow,
    balance_left,
    begin_write,
    case_of_debtor,
    read_case,
    set_status,
)
from dialer.errors import ImportRowError, StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import Debt, DebtStatus, Payment, Tenant

log = logging.getLogger(__name__)

REQUIRED = ("payment_id", "debt_id", "amount", "paid_on")
OPTIONAL = ("currency", "method", "reference")
_AMOUNT = re.compile(r"\d+(?:\.\d+)?")
_LIMITS = {"payment_id": 64, "debt_id": 64, "method": 32, "reference": 100}
MAX_ERRORS_KEPT = 1_000


@dataclass(frozen=True)
class _Debt:
    id: int
    external_id: str
    debtor_id: int
    currency: str
    balance: Decimal
    status: str


def _debt_row(row: Any) -> _Debt:
    return _Debt(
        row.id, row.external_id, row.debtor_id, row.currency, Decimal(row.balance), row.status
    )


_DEBT_COLUMNS = (
    Debt.id,
    Debt.external_id,
    Debt.debtor_id,
    Debt.currency,
    Debt.balance,
    Debt.status,
)


def _find_debt(conn: Connection, tenant_id: int, case: CaseRow | None, named: str | None) -> _Debt:
    if named is not None:
        row = conn.execute(
            select(*_DEBT_COLUMNS).where(Debt.tenant_id == tenant_id, Debt.external_id == named)
        ).first()
        if row is None:
            raise CaseRefused("debt_id", f"no debt {named!r} in this tenant")
        debt = _debt_row(row)
        if case is not None and debt.debtor_id != case.debtor_id:
            raise CaseRefused("debt_id", f"debt {named!r} is not one of case {case.id}'s debts")
        return debt
    if case is None:
        raise CaseRefused("debt_id", "the debt the payment was made on is missing")
    rows = conn.execute(
        select(*_DEBT_COLUMNS)
        .where(Debt.tenant_id == tenant_id, Debt.debtor_id == case.debtor_id)
        .order_by(Debt.id)
    ).all()
    if len(rows) == 1:
        return _debt_row(rows[0])
    names = ", ".join(repr(r.external_id) for r in rows)
    raise CaseRefused("debt_id", f"case {case.id} has {len(rows)} debts ({names}): name one")


def _same(payment: PaymentIn, stored: Any, debt: _Debt) -> str | None:
    """What differs between a repeated payment id and its record (None: nothing)."""
    if Decimal(stored.amount) != payment.amount:
        return f"amount {Decimal(stored.amount)}, this one says {payment.amount}"
    if stored.debt_id != debt.id:
        return f"debt {stored.debt_ext!r}, this one says {debt.external_id!r}"
    if stored.paid_on != payment.paid_on:
        return f"paid on {stored.paid_on.isoformat()}, this one says {payment.paid_on.isoformat()}"
    return None


def apply_payment(
    conn: Connection,
    tenant_id: int,
    payment: PaymentIn,
    *,
    case_id: int | None,
    source: str,
    actor: Actor,
    now: datetime,
) -> PaymentResult:
    """Record the payment in the current transaction (begun with begin_write), on `case_id` or
    on the case of the debt it names. A repeat with the same facts changes nothing;
    PaymentConflict when the id is known with others, CaseRefused for bad facts."""
    if not payment.payment_id or len(payment.payment_id) > _LIMITS["payment_id"]:
        raise CaseRefused("payment_id", "the payment id must be 1 to 64 characters")
    for field, text in (
        ("payment_id", payment.payment_id),
        ("debt_id", payment.debt),
        ("currency", payment.currency),
        ("method", payment.method),
        ("reference", payment.reference),
    ):
        if text is not None:
            check_text(field, text)
    check_amount(payment.amount, "amount")
    # Money is received on a date that has begun somewhere (UTC+14 is the first to start it).
    latest = (now.astimezone(UTC) + timedelta(hours=14)).date()
    if payment.paid_on > latest:
        raise CaseRefused("paid_on", f"the payment date {payment.paid_on.isoformat()} is ahead")
    case = None
    if case_id is not None:
        case = read_case(conn, tenant_id, case_id, lock=True)
    debt = _find_debt(conn, tenant_id, case, payment.debt)
    if case is None:
        case = case_of_debtor(conn, tenant_id, debt.debtor_id, actor, now)
    stored = conn.execute(
        select(
            Payment.id,
            Payment.case_id,
            Payment.debt_id,
            Payment.amount,
            Payment.paid_on,
            Debt.external_id.label("debt_ext"),
        )
        .join(Debt, Debt.id == Payment.debt_id)
        .where(Payment.tenant_id == tenant_id, Payment.external_id == payment.payment_id)
    ).first()
    if stored is not None:
        differs = _same(payment, stored, debt)
        if differs is not None:
            raise PaymentConflict(
                "payment_id",
                f"payment {payment.payment_id!r} is already recorded with {differs}; "
                "the recorded payment stands",
            )
        balance = conn.execute(select(Debt.balance).where(Debt.id == debt.id)).scalar_one()
        return PaymentResult(stored.id, stored.case_id, False, Decimal(balance), case.status.value)
    if payment.currency is not None and payment.currency.upper() != debt.currency:
        raise CaseRefused(
            "currency",
            f"debt {debt.external_id!r} is in {debt.currency}, the payment in {payment.currency}",
        )
    new_id = int(
        conn.execute(
            insert(Payment)
            .values(
                tenant_id=tenant_id,
                case_id=case.id,
                debt_id=debt.id,
                external_id=payment.payment_id,
                amount=payment.amount,
                currency=debt.currency,
                paid_on=payment.paid_on,
                method=payment.method,
                reference=payment.reference,
                source=source,
                recorded_by=str(actor),
                created_at=now,
            )
            .returning(Payment.id)
        ).scalar_one()
    )
    # The balance stops at zero; money beyond it is reported, not owed back by us here.
    left = max(Decimal(0), debt.balance - payment.amount)
    overpaid = max(Decimal(0), payment.amount - debt.balance)
    values: dict[str, object] = {"balance": left}
    if left == 0 and debt.status in (DebtStatus.OPEN.value, DebtStatus.DISPUTED.value):
        values["status"] = DebtStatus.SETTLED.value  # paid in full: never dialled again
    conn.execute(update(Debt).where(Debt.id == debt.id).values(**values))
    kept = keep_if_paid(conn, case, now)
    what = f"payment {payment.payment_id!r} of {payment.amount} {debt.currency}"
    if balance_left(conn, case) == 0 and CaseStatus.PAID in TRANSITIONS[case.status]:
        case = set_status(conn, case, CaseStatus.PAID, actor, f"paid in full by {what}", now)
    elif kept is not None and case.status is CaseStatus.PROMISE_TO_PAY:
        case = set_status(
            conn, case, CaseStatus.IN_PROGRESS, actor, f"promise {kept} kept by {what}", now
        )
    log.info("= case %s: %s on debt %s, balance %s", case.id, what, debt.id, left)
    return PaymentResult(new_id, case.id, True, left, case.status.value, overpaid)


def post_payment(
    store: Store,
    tenant_id: int,
    payment: PaymentIn,
    *,
    case_id: int | None,
    source: str,
    actor: Actor,
    now: datetime,
) -> PaymentResult:
    """apply_payment in a transaction of its own; a concurrent post of the same id that won
    the race is found on the second try."""
    for attempt in (1, 2):
        try:
            with store.begin() as conn:
                begin_write(conn)
                return apply_payment(
                    conn, tenant_id, payment, case_id=case_id, source=source, actor=actor, now=now
                )
        except IntegrityError as exc:
            if attempt == 2:
                raise StoreError(f"payment {payment.payment_id!r}: {error_reason(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"payment {payment.payment_id!r}: {error_reason(exc)}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


# ----- the payments file -----


@dataclass(frozen=True)
class PaymentImportReport:
    path: str
    tenant: str
    rows_read: int
    recorded: int
    duplicates: int  # ids already recorded with the same facts
    rejected: int
    errors: tuple[ImportRowError, ...]  # the first MAX_ERRORS_KEPT, in line order
    cases_paid: tuple[int, ...]  # cases these payments made paid

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "tenant": self.tenant,
            "rows_read": self.rows_read,
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "cases_paid": list(self.cases_paid),
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
        }


def _decoded(raw_lines: Iterable[bytes], bad: list[ImportRowError]) -> Iterator[str]:
    """Each line decoded on its own, so a line that is not UTF-8 is rejected alone."""
    for number, raw in enumerate(raw_lines, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append(ImportRowError(number, f"not UTF-8 text (byte {exc.start + 1} of the line)"))
            yield ""  # keeps the CSV reader's line count in step


def _parse(cells: list[str], index: dict[str, int], line: int) -> PaymentIn:
    if len(cells) != len(index):
        raise ImportRowError(line, f"expected {len(index)} fields, found {len(cells)}")

    def get(column: str) -> str | None:
        i = index.get(column)
        value = cells[i].strip() if i is not None else ""
        limit = _LIMITS.get(column)
        if limit is not None and len(value) > limit:
            raise ImportRowError(line, f"{column} is longer than {limit} characters")
        return value or None

    for column in REQUIRED:
        if get(column) is None:
            raise ImportRowError(line, f"{column} is empty")
    text = get("amount") or ""
    if not _AMOUNT.fullmatch(text):
        raise ImportRowError(line, f"amount {text!r} is not an amount (write e.g. 125.50)")
    try:
        amount = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern excludes it
        raise ImportRowError(line, f"amount {text!r} is not an amount") from None
    day = get("paid_on") or ""
    try:
        paid_on = date.fromisoformat(day)
    except ValueError:
        raise ImportRowError(line, f"paid_on {day!r} is not a date (write YYYY-MM-DD)") from None
    return PaymentIn(
        payment_id=get("payment_id") or "",
        amount=amount,
        paid_on=paid_on,
        debt=get("debt_id"),
        currency=get("currency"),
        method=get("method"),
        reference=get("reference"),
    )


def _header(cells: list[str], source: Path) -> dict[str, int]:
    names = [c.strip().lower() for c in cells]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ImportRowError(1, f"{source}: header lacks column(s): {', '.join(missing)}")
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise ImportRowError(1, f"{source}: header repeats column(s): {', '.join(repeated)}")
    return {name: i for i, name in enumerate(names)}


def import_payments(
    store: Store, path: str | Path, tenant: str, *, now: datetime
) -> PaymentImportReport:
    """Record every payment of the file (format in this module's docstring), one transaction
    per row. ImportRowError (line 0 or 1) when the file cannot be read or its header is bad;
    CaseError for an unknown tenant."""
    source = Path(path)
    with store.begin() as conn:
        tenant_id = conn.execute(select(Tenant.id).where(Tenant.name == tenant)).scalar()
    if tenant_id is None:
        raise CaseError(f"no tenant {tenant!r}")
    try:
        handle = source.open("rb")
    except OSError as exc:
        raise ImportRowError(0, f"{source}: cannot open: {exc.strerror or exc}") from exc
    actor = Actor.system(f"payments-file:{source.name}")
    errors: list[ImportRowError] = []
    rejected = recorded = duplicates = rows_read = 0
    paid: list[int] = []
    index: dict[str, int] | None = None

    def reject(error: ImportRowError) -> None:
        nonlocal rejected
        rejected += 1
        if len(errors) < MAX_ERRORS_KEPT:
            errors.append(error)

    with handle:
        undecodable: list[ImportRowError] = []
        reader = csv.reader(_decoded(handle, undecodable))
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                rows_read += 1
                reject(ImportRowError(reader.line_num, f"malformed CSV: {exc}"))
                continue
            line = reader.line_num
            if undecodable:
                rows_read += len(undecodable)
                for error in undecodable:
                    reject(error)
                undecodable.clear()
                continue
            if not cells or all(not c.strip() for c in cells):
                continue
            if index is None:
                index = _header(cells, source)
                continue
            rows_read += 1
            try:
                payment = _parse(cells, index, line)
                result = post_payment(
                    store, tenant_id, payment, case_id=None, source="csv", actor=actor, now=now
                )
            except ImportRowError as exc:
                reject(exc)
                continue
            except CaseRefused as exc:
                reject(ImportRowError(line, str(exc)))
                continue
            if not result.created:
                duplicates += 1
                continue
            recorded += 1
            if result.case_status == CaseStatus.PAID.value:
                paid.append(result.case_id)
    if index is None:
        raise ImportRowError(1, f"{source}: no header line (the file is empty)")
    log.info(
        "= payments %s for tenant %s: %d rows, %d recorded, %d duplicates, %d rejected",
        source.name,
        tenant,
        rows_read,
        recorded,
        duplicates,
        rejected,
    )
    return PaymentImportReport(
        path=str(source),
        tenant=tenant,
        rows_read=rows_read,
        recorded=recorded,
        duplicates=duplicates,
        rejected=rejected,
        errors=tuple(sorted(errors, key=lambda e: e.line)),
        cases_paid=tuple(sorted(set(paid))),
    )
