"""Builders for compliance guard tests: guards on a preset, requests, deterministic ids."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from compliance_guard.audit import MemoryAudit
from compliance_guard.models import AttemptRequest, PhoneType
from compliance_guard.rules import RuleSet, load_preset
from compliance_guard.service import Guard, RuleBook
from compliance_guard.store import ComplianceStore, MemoryStore

NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")
NY_MOBILE = "+12125551234"
NY_HOME = "+12125550000"
NY_WORK = "+13475550101"
CN_MOBILE = "+8613800138000"


def ids(prefix: str = "r") -> Any:
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


def guard(
    ruleset: str | RuleSet = "us-regf",
    store: ComplianceStore | None = None,
    audit: Any = None,
    prefix: str = "r",
) -> Guard:
    rs = load_preset(ruleset) if isinstance(ruleset, str) else ruleset
    return Guard(
        store if store is not None else MemoryStore(),
        RuleBook({rs.name: rs}, default=rs.name),
        audit=audit if audit is not None else MemoryAudit(),
        new_id=ids(prefix),
    )


def request(**changes: Any) -> AttemptRequest:
    base = AttemptRequest(
        tenant="bank",
        person_id="p1",
        debt_ids=("d1",),
        phone=NY_MOBILE,
        campaign_id="c1",
        phone_type=PhoneType.MOBILE,
    )
    return replace(base, **changes)


def ny(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """A wall-clock time in New York (the offset is whatever applies that day)."""
    return datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK)


def sh(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """A wall-clock time in Beijing."""
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)
