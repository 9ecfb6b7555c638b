"""Property: on random rule sets, histories, zones and DST changes the guard equals the reference."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compliance_guard.models import AttemptRequest, Outcome, PhoneType
from compliance_guard.rules import WEEKDAYS, RuleSet, parse_ruleset
from compliance_guard.service import Guard
from compliance_guard.store import MemoryStore
from compliance_guard.store_redis import RedisStore
from tests.compliance_cases.helpers import guard
from tests.compliance_cases.reference import PastEvent, denied_by, next_allowed

ZONE_SETS = [
    ("America/New_York",),
    ("America/Los_Angeles", "America/New_York"),
    ("Europe/London",),
    ("Australia/Sydney", "Asia/Shanghai"),
    ("Asia/Kolkata", "Asia/Kathmandu"),
    ("America/St_Johns", "Europe/Berlin", "America/Chicago"),
]
# Days when clocks change somewhere in ZONE_SETS (2026).
DST_DAYS = [
    datetime(2026, 3, 8, tzinfo=UTC),
    datetime(2026, 3, 29, tzinfo=UTC),
    datetime(2026, 4, 5, tzinfo=UTC),
    datetime(2026, 10, 4, tzinfo=UTC),
    datetime(2026, 10, 25, tzinfo=UTC),
    datetime(2026, 11, 1, tzinfo=UTC),
]
PHONES = ["+18005550100", "+18885550101"]  # toll-free: zones come from the request only
HORIZON = timedelta(days=9)  # the reference looks this far; the guard looks further


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@st.composite
def spans(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 6)) == 0:
        return ""  # closed all day
    a = draw(st.integers(0, 94)) * 15
    b = draw(st.integers(a // 15 + 1, 96)) * 15
    return f"{_clock(a)}-{_clock(b)}"


@st.composite
def rulesets(draw: st.DrawFn) -> RuleSet:
    outcomes = [o.value for o in Outcome]
    data: dict[str, Any] = {
        "name": "random",
        "version": "1",
        "ring_seconds": draw(st.sampled_from([0, 900, 1800])),
        "windows": [
            {"id": f"w{i}", "citation": "t", "hours": {d: draw(spans()) for d in WEEKDAYS}}
            for i in range(draw(st.integers(0, 2)))
        ],
        "caps": [
            {
                "id": f"cap{i}",
                "citation": "t",
                "scope": draw(st.sampled_from(["person", "person_debt", "debt", "phone", "campaign"])),
                "limit": draw(st.integers(1, 3)),
                "window_days": draw(st.integers(1, 8)),
                "calendar_days": draw(st.booleans()),
                "phone_types": draw(st.lists(st.sampled_from([p.value for p in PhoneType]), unique=True, max_size=2)),
                "counts": draw(st.lists(st.sampled_from(outcomes), unique=True, min_size=1)),
            }
            for i in range(draw(st.integers(0, 3)))
        ],
        "conversation_periods": [
            {"id": "conv", "citation": "t", "days": draw(st.integers(1, 8))}
        ] if draw(st.booleans()) else [],
    }  # fmt: skip
    return parse_ruleset(data, "hypothesis")


@dataclass(frozen=True)
class Op:
    advance: int  # quarter hours
    inbound: bool
    request: AttemptRequest
    action: str  # an outcome, "release" or "pending"


@st.composite
def ops(draw: st.DrawFn) -> Op:
    req = AttemptRequest(
        tenant="t",
        person_id=draw(st.sampled_from(["p1", "p2"])),
        debt_ids=tuple(draw(st.lists(st.sampled_from(["d1", "d2", "d3"]), unique=True, min_size=1, max_size=2))),
        phone=draw(st.sampled_from(PHONES)),
        campaign_id=draw(st.sampled_from(["c1", "c2"])),
        phone_type=draw(st.sampled_from(list(PhoneType))),
        time_zones=draw(st.sampled_from(ZONE_SETS)),
    )  # fmt: skip
    return Op(
        advance=draw(st.one_of(st.integers(0, 8), st.integers(0, 200))),
        inbound=draw(st.integers(0, 9)) == 0,
        request=req,
        action=draw(st.sampled_from([o.value for o in Outcome] + ["release", "pending"])),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ruleset=rulesets(),
    start=st.sampled_from(DST_DAYS),
    offset=st.integers(-4 * 24 * 6, 4 * 24 * 2),
    script=st.lists(ops(), min_size=1, max_size=10),
)
def test_guard_agrees_with_the_reference_on_every_decision(
    ruleset: RuleSet, start: datetime, offset: int, script: list[Op]
) -> None:
    replay_against_reference(guard(ruleset, MemoryStore()), ruleset, start, offset, script)


@pytest.mark.redis
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ruleset=rulesets(),
    start=st.sampled_from(DST_DAYS),
    offset=st.integers(-4 * 24 * 6, 4 * 24 * 2),
    script=st.lists(ops(), min_size=1, max_size=10),
)
def test_guard_on_redis_agrees_with_the_reference(
    redis_url: str, redis_prefix: str, ruleset: RuleSet, start: datetime, offset: int,
    script: list[Op],
) -> None:  # fmt: skip
    store = RedisStore(redis_url, prefix=f"{redis_prefix}{uuid.uuid4().hex[:8]}:")
    try:
        replay_against_reference(guard(ruleset, store), ruleset, start, offset, script)
    finally:
        store.close()


def replay_against_reference(
    g: Guard, ruleset: RuleSet, start: datetime, offset: int, script: list[Op]
) -> None:
    history: list[PastEvent] = []
    now = start + timedelta(minutes=15 * offset)
    for op in script:
        now += timedelta(minutes=15 * op.advance)
        req = op.request
        if op.inbound:
            g.record_inbound("t", req.person_id, req.debt_ids, now)
            history.append(PastEvent(now, req.person_id, req.debt_ids, req.phone,
                                     req.phone_type.value, req.campaign_id, True, None))  # fmt: skip
            continue
        expected = denied_by(ruleset, history, req, now)
        decision = g.check_and_reserve(req, now)
        assert sorted(r.rule for r in decision.reasons) == expected, (now, req)
        assert decision.allowed == (not expected)
        for rule in {r.rule.rstrip("0123456789") for r in decision.reasons}:
            event(f"denied by {rule}")  # shown by --hypothesis-show-statistics
        if expected:
            reference = next_allowed(ruleset, history, req, now, HORIZON)
            if reference is not None:
                assert decision.next_allowed_at == reference
            else:  # nothing open within the reference's horizon: the guard must agree
                assert decision.next_allowed_at is None or decision.next_allowed_at > now + HORIZON
            continue
        assert decision.reservation_id is not None
        if op.action == "release":
            g.release(decision.reservation_id, now)
            continue
        outcome = None if op.action == "pending" else op.action
        if outcome is not None:
            g.record_outcome(decision.reservation_id, Outcome(outcome), now)
        history.append(PastEvent(now, req.person_id, req.debt_ids, req.phone,
                                 req.phone_type.value, req.campaign_id, False, outcome))  # fmt: skip
