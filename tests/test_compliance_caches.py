"""The guard's caches never change an answer, survive clock changes and stay bounded."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from compliance_guard.audit import MemoryAudit
from compliance_guard.memo import BoundedMemo
from compliance_guard.rules import RuleSet, parse_ruleset
from compliance_guard.service import Guard, RuleBook, decision_to_dict
from compliance_guard.store import MemoryStore
from tests.compliance_cases.helpers import NY_MOBILE, guard, ids, ny, request
from tests.compliance_cases.reference import window_ok

TOLL_FREE = "+18005550100"  # no zone of its own: the zones come from the request


def test_memo_holds_at_most_its_size_and_keeps_what_is_still_used() -> None:
    memo: BoundedMemo[int, str] = BoundedMemo(10)
    memo.put(0, "zero")
    for i in range(1, 100):
        memo.put(i, str(i))
        assert memo.get(0) == "zero"  # used all along: survives every turnover
        assert len(memo) <= 10
    assert memo.get(1) is None  # not used since: forgotten
    assert memo.get(99) == "99"


def test_guard_caches_stay_bounded_over_a_portfolio_larger_than_them() -> None:
    rs = guard().rulebook.rulesets["us-regf"]
    g = Guard(MemoryStore(), RuleBook({"us-regf": rs}, default="us-regf"), cache_size=64)
    for i in range(500):
        req = request(person_id=f"p{i}", phone=f"+1212555{i:04d}", debt_ids=(f"d{i}",))
        assert g.check(req, ny(2026, 3, 2, 10, 0)).allowed
    sizes = g.cache_sizes()
    assert sizes["phones"] > 0 and sizes["prepared"] > 0
    assert all(n <= 64 for n in sizes.values()), sizes


def test_a_number_seen_before_the_clocks_go_forward_gets_the_window_of_after() -> None:
    g = guard("us-regf")
    # Saturday 7 March 2026, 13:30 UTC is 08:30 EST: open; the number, its template and that
    # day are now cached.
    assert g.check(request(), datetime(2026, 3, 7, 13, 30, tzinfo=UTC)).allowed
    # Clocks go forward at 02:00 on Sunday 8 March. 12:30 UTC is then 08:30 EDT: open (with
    # Saturday's offset it would read 07:30 and be denied).
    assert g.check(request(), datetime(2026, 3, 8, 12, 30, tzinfo=UTC)).allowed
    # 01:30 UTC on Monday is 21:30 EDT on Sunday: closed (Saturday's offset: 20:30, open).
    late = g.check(request(), datetime(2026, 3, 9, 1, 30, tzinfo=UTC))
    assert [r.rule for r in late.reasons] == ["regf-convenient-hours"]
    assert late.next_allowed_at == ny(2026, 3, 9, 8, 0)


def test_a_number_seen_before_the_clocks_go_back_gets_the_window_of_after() -> None:
    g = guard("us-regf")
    assert g.check(request(), datetime(2026, 10, 31, 12, 30, tzinfo=UTC)).allowed  # 08:30 EDT
    # Clocks go back at 02:00 on Sunday 1 November: on Monday 12:30 UTC is 07:30 EST.
    early = g.check(request(), datetime(2026, 11, 2, 12, 30, tzinfo=UTC))
    assert [r.rule for r in early.reasons] == ["regf-convenient-hours"]
    assert early.next_allowed_at == datetime(2026, 11, 2, 13, 0, tzinfo=UTC)
    assert g.check(request(), datetime(2026, 11, 2, 13, 0, tzinfo=UTC)).allowed


def _odd_hours(ring_seconds: int) -> RuleSet:
    """Windows that open and close around the hours the clocks change, with a long ring."""
    return parse_ruleset(
        {
            "name": "odd-hours",
            "version": "1",
            "ring_seconds": ring_seconds,
            "windows": [
                {"id": "night", "citation": "t", "hours": {"all": "00:00-01:30,01:45-02:30"}},
                {"id": "day", "citation": "t", "hours": {"all": "00:30-03:15,08:00-21:00"}},
            ],
        },
        "test",
    )


@pytest.mark.parametrize("ring_seconds", [0, 1800, 5400])
@pytest.mark.parametrize(
    ("zones", "start"),
    [
        (("America/New_York",), datetime(2026, 3, 7, 12, tzinfo=UTC)),
        (("America/New_York",), datetime(2026, 10, 31, 12, tzinfo=UTC)),
        (("Europe/London", "America/St_Johns"), datetime(2026, 3, 28, 12, tzinfo=UTC)),
        (("America/Santiago",), datetime(2026, 4, 4, 0, tzinfo=UTC)),  # changes at midnight
        (("America/Santiago",), datetime(2026, 9, 5, 0, tzinfo=UTC)),
    ],
)
def test_one_guard_across_a_clock_change_agrees_with_the_reference_every_five_minutes(
    ring_seconds: int, zones: tuple[str, ...], start: datetime
) -> None:
    rs = _odd_hours(ring_seconds)
    g = guard(rs)  # one guard throughout: its caches carry over the change
    req = request(phone=TOLL_FREE, time_zones=zones)
    t = start
    while t < start + timedelta(hours=36):
        decision = g.check(req, t)
        assert sorted(r.rule for r in decision.reasons) == sorted(window_ok(rs, t, zones)), t
        t += timedelta(minutes=5)


def _decisions(g: Guard, reqs: list[Any]) -> list[dict[str, Any]]:
    out = []
    for day in range(3):
        for hour in (7, 10, 20):
            at = ny(2026, 3, 6 + day, hour, 30)  # across the change of 8 March
            out += [decision_to_dict(g.check_and_reserve(r, at)) for r in reqs]
    return out


def test_prepare_changes_no_decision_and_writes_nothing() -> None:
    reqs = [
        request(person_id=f"p{i}", phone=f"+1{area}555{i:04d}", debt_ids=(f"d{i}",))
        for i, area in enumerate(["212", "208", "312", "800", "907"])
    ]
    bad = [replace(reqs[0], person_id="a|b"), replace(reqs[0], campaign_id="nowhere")]
    plain = guard("us-regf")
    audit = MemoryAudit()
    prepared = guard("us-regf", audit=audit)
    rs = prepared.rulebook.rulesets["us-regf"]
    prepared.rulebook = RuleBook({"us-regf": rs}, by_campaign={("bank", "c1"): "us-regf"})
    plain.rulebook = prepared.rulebook
    assert prepared.prepare([*reqs, *bad]) == len(reqs)  # the bad ones are skipped
    assert audit.entries == []
    assert prepared.store.entries("bank|cap|regf-7-in-7|person_debt|p0/d0") == []
    assert _decisions(prepared, reqs) == _decisions(plain, reqs)


def test_request_fields_of_an_unexpected_type_are_still_decided() -> None:
    g = guard("us-regf")
    # A list where a tuple belongs cannot be a cache key: decided without the cache, alike.
    listed = replace(request(), debt_ids=["d1"])  # type: ignore[arg-type]
    same = Guard(g.store, g.rulebook, audit=MemoryAudit(), new_id=ids("x"))
    assert g.check(listed, ny(2026, 3, 2, 10)).allowed
    assert decision_to_dict(g.check(listed, ny(2026, 3, 2, 7))) == decision_to_dict(
        same.check(request(), ny(2026, 3, 2, 7))
    )
    assert g.check(replace(request(), phone=NY_MOBILE), ny(2026, 3, 2, 10)).allowed
