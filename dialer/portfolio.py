"""A synthetic but realistic debt portfolio in the import CSV format, for demos and benchmarks.

Every phone number is a fictional North American number: a real area code with a line number
in 555-0100..555-0199, the block the numbering plan sets aside for fiction. That gives 100
numbers per area code (2,000 in all), so large portfolios reuse numbers across debtors: harmless
in a demo, and it means a sample file can never ring a real person.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from dialer.importer import COLUMNS


@dataclass(frozen=True)
class _Area:
    area_code: str
    city: str
    region: str
    postal_code: str
    timezone: str


_AREAS: tuple[_Area, ...] = (
    _Area("212", "New York", "NY", "10001", "America/New_York"),
    _Area("718", "Brooklyn", "NY", "11201", "America/New_York"),
    _Area("617", "Boston", "MA", "02108", "America/New_York"),
    _Area("202", "Washington", "DC", "20001", "America/New_York"),
    _Area("404", "Atlanta", "GA", "30303", "America/New_York"),
    _Area("305", "Miami", "FL", "33130", "America/New_York"),
    _Area("313", "Detroit", "MI", "48226", "America/Detroit"),
    _Area("312", "Chicago", "IL", "60601", "America/Chicago"),
    _Area("214", "Dallas", "TX", "75201", "America/Chicago"),
    _Area("504", "New Orleans", "LA", "70112", "America/Chicago"),
    _Area("612", "Minneapolis", "MN", "55401", "America/Chicago"),
    _Area("303", "Denver", "CO", "80202", "America/Denver"),
    _Area("801", "Salt Lake City", "UT", "84101", "America/Denver"),
    _Area("602", "Phoenix", "AZ", "85004", "America/Phoenix"),
    _Area("213", "Los Angeles", "CA", "90012", "America/Los_Angeles"),
    _Area("415", "San Francisco", "CA", "94103", "America/Los_Angeles"),
    _Area("206", "Seattle", "WA", "98101", "America/Los_Angeles"),
    _Area("702", "Las Vegas", "NV", "89101", "America/Los_Angeles"),
    _Area("907", "Anchorage", "AK", "99501", "America/Anchorage"),
    _Area("808", "Honolulu", "HI", "96813", "Pacific/Honolulu"),
)

_GIVEN = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "José", "María", "Luis", "Ana", "Chloé", "Zoë", "Seán",
    "Aaliyah", "Dmitri", "Fatima", "Kwame", "Priya", "Hiroshi", "Olga",
)  # fmt: skip
_FAMILY = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodríguez",
    "Martínez", "Hernández", "López", "Núñez", "O'Brien", "Nguyen", "Kim", "Patel", "Novak",
    "Müller", "Kowalski", "Okafor", "Ivanova", "Van der Berg", "Jackson",
)  # fmt: skip
_CHINESE_FAMILY = ("王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "欧阳")
_CHINESE_GIVEN = (
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
    "涛", "明", "超", "秀兰", "霞", "子涵", "浩然", "欣怡", "宇轩",
)  # fmt: skip
_STREETS = ("Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Park Blvd", "2nd St", "Elm St")
_SOURCES = ("application", "skip_trace", "creditor_update", "inbound_call")
_CENT = Decimal("0.01")


def _phone_text(rng: random.Random, area: str, line: int) -> str:
    """The same number written the many ways creditors' exports write it."""
    local = f"555{line:04d}"
    style = rng.randrange(5)
    if style == 0:
        return f"({area}) {local[:3]}-{local[3:]}"
    if style == 1:
        return f"{area}-{local[:3]}-{local[3:]}"
    if style == 2:
        return f"+1 {area} {local[:3]} {local[3:]}"
    if style == 3:
        return f"1{area}{local}"
    return f"{area}{local}"


def _money(value: float) -> str:
    return str(Decimal(value).quantize(_CENT, rounding=ROUND_HALF_UP))


def write_sample_portfolio(path: str | Path, debtors: int, seed: int) -> None:
    """Write `debtors` debtors (1–2 debts, 1–3 phones each) to `path`; same seed, same file."""
    rng = random.Random(seed)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    used_lines: dict[str, int] = {}
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow((*COLUMNS, "do_not_call"))
        for n in range(1, debtors + 1):
            area = rng.choice(_AREAS)
            if rng.random() < 0.25:
                name = rng.choice(_CHINESE_FAMILY) + rng.choice(_CHINESE_GIVEN)
            else:
                name = f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}"
            national_id = (
                f"9{rng.randrange(10, 100)}-{rng.randrange(70, 100)}-{rng.randrange(10000):04d}"
                if rng.random() < 0.7
                else ""
            )
            street = f"{rng.randrange(1, 9999)} {rng.choice(_STREETS)}"
            debts = []
            for d in range(rng.choice((1, 1, 1, 2))):
                principal = min(max(rng.lognormvariate(7.2, 1.0), 50.0), 80_000.0)
                # A few accounts are already paid down to zero: the dialer must skip them.
                share = 0.0 if rng.random() < 0.03 else rng.uniform(0.25, 1.35)
                debts.append(
                    (
                        f"A{n:07d}-{d + 1}",
                        _money(principal),
                        _money(principal * share),
                        str(rng.randint(1, 720)),
                        str(rng.randint(1, 999)),
                    )
                )
            phones = []
            for _ in range(rng.choice((1, 1, 2, 2, 3))):
                number_area = area if rng.random() < 0.8 else rng.choice(_AREAS)
                # Hand out each area's 100 fictional lines in turn before reusing one.
                line = 100 + used_lines.get(number_area.area_code, 0) % 100
                used_lines[number_area.area_code] = line - 99
                area_code = number_area.area_code
                phones.append(
                    (
                        _phone_text(rng, area_code, line),
                        rng.choice(("mobile", "mobile", "home", "work", "")),
                        rng.choice(_SOURCES),
                        "yes" if rng.random() < 0.85 else "no",
                        "yes" if rng.random() < 0.02 else "",
                    )
                )
            for k in range(max(len(debts), len(phones))):
                debt = debts[k] if k < len(debts) else ("", "", "", "", "")
                phone = phones[k] if k < len(phones) else ("", "", "", "", "")
                debt_id, principal_text, balance_text, days, risk = debt
                number, kind, source, consent, dnc = phone
                writer.writerow(
                    (
                        f"D{n:07d}",
                        name,
                        national_id,
                        debt_id,
                        principal_text,
                        balance_text,
                        "USD" if debt_id else "",
                        days,
                        risk,
                        number,
                        kind,
                        source,
                        consent,
                        area.timezone,
                        street,
                        area.city,
                        area.region,
                        area.postal_code,
                        "US",
                        dnc,
                    )
                )


def write_numbers_portfolio(path: str | Path, numbers: Sequence[str]) -> None:
    """One New York debtor per number, in the import CSV format, each owing less than the one
    before: the hopper dials the largest balance first, so `numbers` are dialled in order.
    For labs and benchmarks whose numbers decide what the far end does."""
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, COLUMNS)
        out.writeheader()
        for i, number in enumerate(numbers):
            balance = f"{100_000 - i}.00"
            out.writerow(
                {
                    "debtor_id": f"D{i}",
                    "name": f"Debtor {i}",
                    "national_id": f"900-00-{i:04d}",
                    "debt_id": f"A{i}",
                    "principal": balance,
                    "balance": balance,
                    "currency": "USD",
                    "days_past_due": 40,
                    "risk_score": 500,
                    "phone": number,
                    "phone_type": "mobile",
                    "phone_source": "application",
                    "consent": "yes",
                    "timezone": "America/New_York",
                    "address_line1": f"{i} Main St",
                    "city": "New York",
                    "region": "NY",
                    "postal_code": "10001",
                    "country": "US",
                }
            )
